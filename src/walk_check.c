/* The checks both modes of the walk share (walk_check.h): the limits' messages, a string's
 * format and known values, a missing required field. Apart from walk_lua.c and walk_tape.c:
 * they build nothing, and one copy gives both modes one verdict. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "datetime.h"
#include "walk_check.h"

int walk_too_long(json_parser *p, const unsigned char *at, size_t len)
{
    return json_fail(p, "limit", at, 0, NULL, NULL, "a string of %zu bytes is over max_string (%zu)",
                     len, p->limits.max_string);
}

/* A key is bounded by max_string like any string, and by max_key. Known keys count too, so that
 * a limit means the same in parse and in decode. */
int walk_key_too_long(json_parser *p, const unsigned char *at, size_t len)
{
    if (len > p->limits.max_string)
        return walk_too_long(p, at, len);
    return json_fail(p, "limit", at, 0, NULL, NULL, "a key of %zu bytes is over max_key (%zu)",
                     len, p->limits.max_key);
}

int walk_check_text(json_parser *p, const schema_field *f, const json_frame *frame,
                    const unsigned char *at, const char *text, size_t len)
{
    size_t i, used;
    const char *problem;
    char known[120];

    if (f->format == SCHEMA_NONEMPTY && len == 0)
        return json_fail(p, "format", at, 1, frame, NULL, "must not be empty");
    if (f->format == SCHEMA_DATETIME && (problem = datetime_check(text, len, NULL)) != NULL)
        return json_fail(p, "format", at, 1, frame, NULL, "not an RFC 3339 date-time: %s", problem);
    if (f->values && p->strict) {
        for (i = 0; f->values[i]; i++)
            if (strlen(f->values[i]) == len && memcmp(f->values[i], text, len) == 0)
                return 0;
        for (i = 0, used = 0; f->values[i] && used < sizeof known; i++)
            used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                     f->values[i]);
        return json_fail(p, "enum", at, 1, frame, NULL, "not one of the known values (%s)", known);
    }
    return 0;
}

const schema_field *walk_missing(const json_parser *p, const schema_type *t, uint32_t present)
{
    size_t i;
    unsigned required = SCHEMA_REQUIRED | (p->strict ? SCHEMA_STRICT_REQUIRED : 0);
    for (i = 0; i < t->nfields; i++)
        if (!(present & ((uint32_t)1 << i)) && (t->fields[i].flags & required))
            return &t->fields[i];
    return NULL;
}
