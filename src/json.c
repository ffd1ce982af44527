/* The RFC 8259 tokenizer: whitespace, strings (escapes, strict UTF-8), numbers, literals,
 * nesting, and the first-error record. It pushes scalars; the walk builds the containers. */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSON_IS_DIGIT(c) ((c) >= '0' && (c) <= '9')
#define JSON_IS_CONTINUATION(c) ((c) >= 0x80 && (c) <= 0xBF)

/* 1 for the bytes a string may hold as they are: printable ASCII but '"' and '\\'. */
static const unsigned char json_plain[256] = {
    ['\x20'] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x22 is '"' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,            /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,            /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,            /* 0x5C is '\\' */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,            /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,            /* 0x70 */
};

int json_fail(json_parser *p, const char *code, const unsigned char *at, int has_path,
              const json_frame *frame, const char *leaf, const char *fmt, ...)
{
    json_error *e = &p->error;
    va_list ap;
    if (e->code != NULL)
        return JSON_ERROR;
    e->code = code;
    e->offset = (size_t)(at - p->start);
    if (!p->record_path)
        return JSON_ERROR;
    va_start(ap, fmt);
    vsnprintf(e->detail, sizeof e->detail, fmt, ap);
    va_end(ap);
    if (has_path)
        p->record_path(p, frame, leaf);
    return JSON_ERROR;
}

int json_unexpected(json_parser *p, const char *expected)
{
    unsigned char c = *p->cur;
    if (p->cur >= p->end)
        return json_fail(p, "syntax", p->end, 0, NULL, NULL, "unexpected end of input, expected %s",
                         expected);
    if (p->cur == p->start && p->end - p->start >= 3 && memcmp(p->start, "\xEF\xBB\xBF", 3) == 0)
        return json_fail(p, "syntax", p->cur, 0, NULL, NULL,
                         "the input starts with a UTF-8 byte-order mark (EF BB BF), which JSON"
                         " text must not (RFC 8259 8.1); expected %s", expected);
    if (c >= 0x20 && c < 0x7F)
        return json_fail(p, "syntax", p->cur, 0, NULL, NULL, "unexpected '%c', expected %s", c,
                         expected);
    return json_fail(p, "syntax", p->cur, 0, NULL, NULL, "unexpected byte 0x%02X, expected %s", c,
                     expected);
}

static int json_starts_with(const json_parser *p, const char *word, size_t len)
{
    return (size_t)(p->end - p->cur) >= len && memcmp(p->cur, word, len) == 0;
}

const char *json_type_name(const json_parser *p)
{
    switch (*p->cur) {
    case '"': return "string";
    case '{': return "object";
    case '[': return "array";
    case 't': return json_starts_with(p, "true", 4) ? "boolean" : NULL;
    case 'f': return json_starts_with(p, "false", 5) ? "boolean" : NULL;
    case 'n': return json_starts_with(p, "null", 4) ? "null" : NULL;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return "number";
    default: return NULL;
    }
}

int json_literal(json_parser *p)
{
    if (json_starts_with(p, "true", 4)) {
        p->cur += 4;
        return 1;
    }
    if (json_starts_with(p, "false", 5)) {
        p->cur += 5;
        return 0;
    }
    if (json_starts_with(p, "null", 4)) {
        p->cur += 4;
        return JSON_LITERAL_NULL;
    }
    return json_unexpected(p, "a value");
}

int json_enter(json_parser *p)
{
    if (++p->depth > p->limits.max_depth)
        return json_fail(p, "limit", p->cur, 0, NULL, NULL, "nested deeper than max_depth (%zu)",
                         p->limits.max_depth);
    return 0;
}

/* The value of four hex digits, or -1. Stops at the first bad byte, so never reads past NUL. */
static long json_hex4(const unsigned char *c)
{
    long v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        unsigned char d = c[i];
        if (JSON_IS_DIGIT(d)) v = v * 16 + (d - '0');
        else if (d >= 'a' && d <= 'f') v = v * 16 + (d - 'a' + 10);
        else if (d >= 'A' && d <= 'F') v = v * 16 + (d - 'A' + 10);
        else return -1;
    }
    return v;
}

size_t json_utf8_length(const unsigned char *c)
{
    unsigned char lo = 0x80, hi = 0xBF;
    if (c[0] >= 0xC2 && c[0] <= 0xDF)
        return JSON_IS_CONTINUATION(c[1]) ? 2 : 0;
    if (c[0] >= 0xE0 && c[0] <= 0xEF) {
        if (c[0] == 0xE0) lo = 0xA0;      /* shorter forms are overlong */
        else if (c[0] == 0xED) hi = 0x9F; /* U+D800..U+DFFF are surrogates */
        return (c[1] >= lo && c[1] <= hi && JSON_IS_CONTINUATION(c[2])) ? 3 : 0;
    }
    if (c[0] >= 0xF0 && c[0] <= 0xF4) {
        if (c[0] == 0xF0) lo = 0x90;      /* overlong */
        else if (c[0] == 0xF4) hi = 0x8F; /* above U+10FFFF */
        return (c[1] >= lo && c[1] <= hi && JSON_IS_CONTINUATION(c[2]) &&
                JSON_IS_CONTINUATION(c[3])) ? 4 : 0;
    }
    return 0;
}

static size_t json_utf8_encode(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Whether the first three bytes of w (read in memory order) are a three-byte UTF-8 sequence
 * led by E1..EC or EE..EF: those need no overlong or surrogate check. */
static int json_is_common_three(uint32_t w)
{
    unsigned char b[4];
    memcpy(b, &w, 4);
    return (b[1] & 0xC0) == 0x80 && (b[2] & 0xC0) == 0x80 &&
           b[0] >= 0xE1 && b[0] <= 0xEF && b[0] != 0xED;
}

/* Whether none of eight bytes needs a closer look: no control byte, '"', '\\' or non-ASCII. */
static int json_word_is_plain(uint64_t v)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t quote = v ^ (ones * '"'), backslash = v ^ (ones * '\\');
    uint64_t special = (v - ones * 0x20) |             /* a byte below 0x20 borrows */
                       ((quote - ones) & ~quote) |     /* a zero byte: '"' */
                       ((backslash - ones) & ~backslash);
    return ((special & ~v) | v) & highs ? 0 : 1;
}

int json_scan_string(json_parser *p, json_string *s, const json_frame *frame)
{
    const unsigned char *c = p->cur + 1;
    size_t saved = 0; /* how much shorter the decoded string is than the raw one */
    long unit, low;
    size_t n;

    s->raw = c;
    s->has_escapes = 0;
    for (;;) {
        uint64_t word;
        while (p->end - c >= 8 && (memcpy(&word, c, 8), json_word_is_plain(word)))
            c += 8;
        while (json_plain[*c])
            c++;
        if (*c >= 0x80) { /* a run of non-ASCII text: one sequence after another */
            do {
                uint32_t w;
                /* Most non-ASCII text in a delivery is three-byte sequences (Japanese): E1..EC or
                 * EE..EF, then two continuation bytes, checked at once. */
                if (p->end - c >= 4 && (memcpy(&w, c, 4), json_is_common_three(w))) {
                    c += 3;
                    continue;
                }
                n = json_utf8_length(c);
                if (n == 0)
                    return json_fail(p, "encoding", c, 1, frame, NULL, "invalid UTF-8 byte 0x%02X",
                                     *c);
                c += n;
            } while (*c >= 0x80);
            continue;
        }
        if (*c == '"')
            break;
        if (*c == '\\') {
            s->has_escapes = 1;
            switch (c[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
                c += 2;
                saved += 1;
                continue;
            case 'u':
                unit = json_hex4(c + 2);
                if (unit < 0)
                    return json_fail(p, "syntax", c, 0, NULL, NULL,
                                     "\\u must be followed by four hex digits");
                if (unit >= 0xDC00 && unit <= 0xDFFF)
                    return json_fail(p, "encoding", c, 1, frame, NULL,
                                     "lone low surrogate \\u%04lX", unit);
                if (unit >= 0xD800 && unit <= 0xDBFF) {
                    low = (c[6] == '\\' && c[7] == 'u') ? json_hex4(c + 8) : -1;
                    if (low < 0xDC00 || low > 0xDFFF)
                        return json_fail(p, "encoding", c, 1, frame, NULL,
                                         "lone high surrogate \\u%04lX", unit);
                    c += 12;
                    saved += 12 - 4;
                    continue;
                }
                c += 6;
                saved += 6 - (unit < 0x80 ? 1 : unit < 0x800 ? 2 : 3);
                continue;
            default:
                if (c + 1 >= p->end)
                    return json_fail(p, "syntax", p->end, 0, NULL, NULL,
                                     "unexpected end of input inside a string");
                return json_fail(p, "syntax", c, 0, NULL, NULL, "invalid escape sequence");
            }
        }
        if (c >= p->end) /* what is left is a byte below 0x20 */
            return json_fail(p, "syntax", p->end, 0, NULL, NULL,
                             "unexpected end of input inside a string");
        return json_fail(p, "syntax", c, 0, NULL, NULL,
                         "control character 0x%02X must be escaped in a string", *c);
    }
    s->raw_len = (size_t)(c - s->raw);
    s->len = s->raw_len - saved;
    p->cur = c + 1;
    return 0;
}

/* The escape sequence at c (a checked backslash): its bytes in out, how many; *used: how many
 * input bytes it takes. */
static size_t json_unescape(const unsigned char *c, char out[4], size_t *used)
{
    unsigned long cp;
    *used = 2;
    switch (c[1]) {
    case 'b': out[0] = '\b'; return 1;
    case 'f': out[0] = '\f'; return 1;
    case 'n': out[0] = '\n'; return 1;
    case 'r': out[0] = '\r'; return 1;
    case 't': out[0] = '\t'; return 1;
    case 'u':
        cp = (unsigned long)json_hex4(c + 2);
        *used = 6;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((unsigned long)json_hex4(c + 8) - 0xDC00);
            *used = 12;
        }
        return json_utf8_encode(cp, out);
    default: out[0] = (char)c[1]; return 1; /* '"', '\\' or '/' */
    }
}

/* Appends a checked raw string, decoded; as an RFC 6901 token, '~' and '/' become ~0 and ~1. */
static void json_add_decoded(luaL_Buffer *b, const unsigned char *c, size_t len, int as_pointer)
{
    const unsigned char *end = c + len, *run;
    char bytes[4];
    size_t n, used;
    while (c < end) {
        run = c;
        while (c < end && *c != '\\' && !(as_pointer && (*c == '~' || *c == '/')))
            c++;
        luaL_addlstring(b, (const char *)run, (size_t)(c - run));
        if (c == end)
            break;
        if (*c == '\\') {
            n = json_unescape(c, bytes, &used);
            c += used;
        } else {
            bytes[0] = (char)*c++;
            n = 1;
        }
        if (as_pointer && n == 1 && (bytes[0] == '~' || bytes[0] == '/'))
            luaL_addlstring(b, bytes[0] == '~' ? "~0" : "~1", 2);
        else
            luaL_addlstring(b, bytes, n);
    }
}

void json_decode_into(char *out, const json_string *s)
{
    const unsigned char *c = s->raw, *end = s->raw + s->raw_len;
    size_t used;
    while (c < end) {
        if (*c == '\\') {
            out += json_unescape(c, out, &used);
            c += used;
        } else {
            *out++ = (char)*c++;
        }
    }
}

void json_push_string(lua_State *L, const json_string *s)
{
    luaL_Buffer b;
    if (!s->has_escapes) {
        lua_pushlstring(L, (const char *)s->raw, s->raw_len);
        return;
    }
    luaL_buffinit(L, &b);
    json_add_decoded(&b, s->raw, s->raw_len, 0);
    luaL_pushresult(&b);
}

void json_add_pointer_token(luaL_Buffer *b, const unsigned char *quote)
{
    const unsigned char *c = quote + 1;
    while (*c != '"')
        c += (*c == '\\') ? 2 : 1;
    json_add_decoded(b, quote + 1, (size_t)(c - (quote + 1)), 1);
}

/* strtod reads the locale's decimal point; JSON's is always '.'. */
static double json_strtod(lua_State *L, const unsigned char *s, size_t len, int *ok)
{
    char *after;
    const char *text = (const char *)s;
    double d;
    char point = localeconv()->decimal_point[0];
    size_t i;
    luaL_Buffer b;
    if (point != '.') {
        luaL_buffinit(L, &b);
        for (i = 0; i < len; i++)
            luaL_addchar(&b, s[i] == '.' ? point : (char)s[i]);
        luaL_pushresult(&b);
        text = lua_tostring(L, -1);
    }
    d = strtod(text, &after);
    *ok = (size_t)(after - text) == len;
    if (point != '.')
        lua_pop(L, 1);
    return d;
}

int json_number(lua_State *L, json_parser *p)
{
    const unsigned char *s = p->cur, *c = s;
    int negative = (*c == '-'), integral = 1, digits = 0, ok;
    uint64_t mantissa = 0;
    double d;

    if (negative)
        c++;
    if (*c == '0') {
        c++;
        digits = 1;
    } else if (*c >= '1' && *c <= '9') {
        for (; JSON_IS_DIGIT(*c); c++, digits++)
            if (digits < 19)
                mantissa = mantissa * 10 + (uint64_t)(*c - '0');
    } else {
        return json_fail(p, "syntax", c, 0, NULL, NULL, "a number needs a digit here");
    }
    if (*c == '.') {
        integral = 0;
        if (!JSON_IS_DIGIT(c[1]))
            return json_fail(p, "syntax", c + 1, 0, NULL, NULL, "a digit must follow '.'");
        for (c++; JSON_IS_DIGIT(*c); c++)
            ;
    }
    if (*c == 'e' || *c == 'E') {
        integral = 0;
        c++;
        if (*c == '+' || *c == '-')
            c++;
        if (!JSON_IS_DIGIT(*c))
            return json_fail(p, "syntax", c, 0, NULL, NULL, "an exponent needs digits");
        while (JSON_IS_DIGIT(*c))
            c++;
    }
    p->cur = c;

#if COMPAT_HAS_INTEGERS
    /* Like Lua's own tonumber: an integer literal that fits is an integer. */
    if (integral && digits <= 19 &&
        mantissa <= (uint64_t)INT64_MAX + (uint64_t)negative) {
        lua_pushinteger(L, negative ? (lua_Integer)(0 - mantissa) : (lua_Integer)mantissa);
        return 0;
    }
#else
    if (integral && digits <= 15) { /* exact in a double */
        lua_pushnumber(L, negative ? -(lua_Number)mantissa : (lua_Number)mantissa);
        return 0;
    }
#endif
    d = json_strtod(L, s, (size_t)(c - s), &ok);
    if (!ok)
        return json_fail(p, "syntax", s, 0, NULL, NULL, "malformed number");
    if (isinf(d))
        return json_fail(p, "limit", s, 0, NULL, NULL, "number out of the range of a double");
    lua_pushnumber(L, (lua_Number)d);
    return 0;
}
