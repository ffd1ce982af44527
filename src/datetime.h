/* RFC 3339 section 5.6 date-times, checked against the calendar. */
#ifndef JICOO_DATETIME_H
#define JICOO_DATETIME_H

#include <stddef.h>

/* NULL when s is a valid date-time (and, unless epoch is NULL, *epoch the Unix time it
 * names, fraction kept); otherwise what is wrong with it. */
const char *datetime_check(const char *s, size_t len, double *epoch);

#endif
