/* RFC 3339 date-times: YYYY-MM-DD(T|t)HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM). */
#include "datetime.h"

#define DATETIME_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* Days before each month in a common year. */
static const int datetime_month_start[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};

static int datetime_is_leap(long year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

static int datetime_month_length(long year, int month)
{
    static const int lengths[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return lengths[month - 1] + (month == 2 && datetime_is_leap(year));
}

/* Days from 0000-01-01 to the first day of `year` (year >= 0; 0000 is a leap year). */
#define DATETIME_DAYS_BEFORE_YEAR(year) \
    (365 * (year) + ((year) + 3) / 4 - ((year) + 99) / 100 + ((year) + 399) / 400)

/* The value of the two digits at s, or -1 when one of them is not a digit. */
static long datetime_two(const char *s)
{
    unsigned tens = (unsigned)(unsigned char)s[0] - '0', ones = (unsigned)(unsigned char)s[1] - '0';
    return (tens > 9 || ones > 9) ? -1 : (long)(tens * 10 + ones);
}

const char *datetime_check(const char *s, size_t len, double *epoch)
{
    long century, year, month, day, hour, minute, second, offset = 0, oh, om, days;
    double fraction = 0, scale = 1, digits = 0;
    size_t i = 19;

    if (len < 19)
        return "too short for an RFC 3339 date-time (YYYY-MM-DDTHH:MM:SS and a time zone)";
    if (s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':')
        return "expected YYYY-MM-DDTHH:MM:SS";
    if (s[10] != 'T' && s[10] != 't')
        return "the date and time must be separated by 'T'";
    century = datetime_two(s);
    year = datetime_two(s + 2);
    month = datetime_two(s + 5);
    day = datetime_two(s + 8);
    hour = datetime_two(s + 11);
    minute = datetime_two(s + 14);
    second = datetime_two(s + 17);
    if ((century | year | month | day | hour | minute | second) < 0)
        return "expected digits in YYYY-MM-DDTHH:MM:SS";
    year += century * 100;
    if (month < 1 || month > 12)
        return "month out of range";
    if (day < 1 || (day > 28 && day > datetime_month_length(year, (int)month)))
        return "day out of range for the month";
    if (hour > 23)
        return "hour out of range";
    if (minute > 59)
        return "minute out of range";
    if (second > 60) /* 60 is a leap second */
        return "second out of range";

    if (s[i] == '.') {
        if (++i == len || !DATETIME_DIGIT(s[i]))
            return "a fraction needs digits";
        if (!epoch) { /* checking only: the digits' value is not needed */
            while (i < len && DATETIME_DIGIT(s[i]))
                i++;
        }
        for (; i < len && DATETIME_DIGIT(s[i]); i++)
            if (scale < 1e15) { /* more digits than a double holds are ignored */
                scale *= 10;
                digits = digits * 10 + (s[i] - '0');
            }
        fraction = digits / scale;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        if (len - i < 6 || s[i + 3] != ':')
            return "expected an offset +HH:MM or -HH:MM";
        oh = datetime_two(s + i + 1);
        om = datetime_two(s + i + 4);
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return "offset out of range";
        offset = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else if (i == len) {
        return "no time zone after the time: expected Z, +HH:MM or -HH:MM";
    } else {
        return "expected an offset: Z, +HH:MM or -HH:MM";
    }
    if (i != len)
        return "unexpected characters after the offset";
    if (!epoch)
        return NULL;

    days = DATETIME_DAYS_BEFORE_YEAR(year) - DATETIME_DAYS_BEFORE_YEAR(1970L) +
           datetime_month_start[month - 1] + (month > 2 && datetime_is_leap(year)) + day - 1;
    *epoch = (double)(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction;
    return NULL;
}
