/* The RFC 8259 tokenizer shared by the schema walk and the plain decoder.
 *
 * Every input is a Lua string, so the byte at `end` is always NUL. The scanners lean on that
 * sentinel: NUL is neither whitespace, a digit, a string byte nor a UTF-8 continuation byte, so
 * each loop stops at `end` without a separate bounds test.
 */
#ifndef JICOO_JSON_H
#define JICOO_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "compat.h"

#define JSON_ERROR (-1)

#define JSON_EIGHT_SPACES UINT64_C(0x2020202020202020)

/* The limits one parse enforces (see README "Limits"); each one can be overridden per call. */
typedef struct json_limits {
    size_t max_size;    /* bytes of input */
    size_t max_depth;   /* nested objects and arrays */
    size_t max_string;  /* bytes of one decoded string, keys included */
    size_t max_key;     /* bytes of one decoded key (the runtimes' string hashes, README "Limits") */
    size_t max_keys;    /* keys in one object */
    size_t max_items;   /* items in one array */
    size_t max_values;  /* values in the whole document */
} json_limits;

/* The deepest max_depth a caller may ask for: the walk recurses on the C stack. */
#define JSON_DEPTH_CEILING 1000

/* One step of the path from the root to the value being read. The root value has no frame. */
typedef struct json_frame {
    const struct json_frame *parent;
    const unsigned char *key;  /* the key's opening quote in the input; NULL for an array item */
    size_t index;              /* the array item's index, from 0 */
} json_frame;

/* A string token as it stands in the input, already checked (escapes, UTF-8, controls). */
typedef struct json_string {
    const unsigned char *raw;  /* first byte after the opening quote */
    size_t raw_len;            /* bytes up to the closing quote */
    size_t len;                /* bytes once decoded */
    int has_escapes;
} json_string;

/* The first violation found; the walk stops there. */
typedef struct json_error {
    const char *code;  /* "syntax", "type", ...; NULL while there is none */
    size_t offset;     /* from the start of the input, in bytes */
    char detail[200];
} json_error;

typedef enum json_unknown_keys { JSON_KEEP, JSON_DROP, JSON_REJECT } json_unknown_keys;

typedef struct json_parser json_parser;

/* Takes note of an error's JSON Pointer: `frame` (and `leaf`) name where it is. It is called
 * while the frames still exist: they live on the stack of the walk, gone by the time the error
 * is reported. */
typedef void json_path_fn(json_parser *p, const json_frame *frame, const char *leaf);

/* What the tokenizer and the walk share, whatever they build. No Lua state: the tape (tape.h)
 * writes without one, and the Lua walk keeps its own next to this (walk.h). */
struct json_parser {
    const unsigned char *start, *cur, *end;
    json_limits limits;
    size_t depth, values;
    int strict;                 /* the strict level of the Jicoo contract */
    int reject_duplicates;      /* the Jicoo contract rejects them; plain JSON does not */
    json_unknown_keys unknown_keys;
    json_path_fn *record_path;  /* NULL: an error is only detected, not described (the tape,
                                   whose caller reads the input again to report it) */
    json_error error;
};

/* Records the first error and returns JSON_ERROR. With has_path, `frame` (and `leaf`) name it. */
int json_fail(json_parser *p, const char *code, const unsigned char *at, int has_path,
              const json_frame *frame, const char *leaf, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;

/* Reports the byte at p->cur as not allowed here (or the input as cut short). */
int json_unexpected(json_parser *p, const char *expected);

/* The JSON type a value starting at p->cur has, or NULL when no value starts there. */
const char *json_type_name(const json_parser *p);

/* Reads the string token at p->cur (an opening quote) and leaves p->cur after it. */
int json_scan_string(json_parser *p, json_string *s, const json_frame *frame);

/* Pushes the decoded string. */
void json_push_string(lua_State *L, const json_string *s);

/* The length of the well-formed UTF-8 sequence of two to four bytes at c (RFC 3629: shortest
 * form, no surrogates, nothing above U+10FFFF), or 0. Reads byte by byte and stops at the first
 * that does not fit, so never past a NUL. */
size_t json_utf8_length(const unsigned char *c);

/* Writes the decoded string (s->len bytes) to out. */
void json_decode_into(char *out, const json_string *s);

/* Appends a checked key, decoded and escaped as an RFC 6901 reference token. */
void json_add_pointer_token(luaL_Buffer *b, const unsigned char *quote);

/* Reads the number token at p->cur and pushes it onto L. */
int json_number(lua_State *L, json_parser *p);

/* Reads `true`, `false` or `null` at p->cur; returns 1, 0 or -2 (null), or JSON_ERROR. */
int json_literal(json_parser *p);
#define JSON_LITERAL_NULL (-2)

/* One more nesting level (checks max_depth), and its end. */
int json_enter(json_parser *p);
#define json_leave(p) ((p)->depth--)

/* Whitespace comes in runs of indentation in pretty-printed deliveries: a run of spaces is
 * measured eight bytes at a time, the first byte that is not a space found by counting the
 * zero bytes of (word XOR eight spaces) on little-endian machines. */
static inline const unsigned char *json_skip_spaces(const json_parser *p, const unsigned char *c)
{
    uint64_t word;
    while (p->end - c >= 8) {
        memcpy(&word, c, 8);
        word ^= JSON_EIGHT_SPACES;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        if (word != 0)
            return c + (__builtin_ctzll(word) >> 3);
#else
        if (word != 0)
            break;
#endif
        c += 8;
    }
    while (*c == ' ')
        c++;
    return c;
}

static inline void json_skip_space(json_parser *p)
{
    const unsigned char *c = p->cur;
    if (*c > ' ')
        return;
    for (;;) {
        if (*c == ' ')
            c = json_skip_spaces(p, c);
        if (*c != '\n' && *c != '\r' && *c != '\t')
            break;
        c++;
    }
    p->cur = c;
}

#endif
