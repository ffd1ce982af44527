/* The checks both modes of the walk share, which build nothing: walk_body.h calls them for the
 * Lua walk (walk_lua.c) and for the tape (walk_tape.c). The limits' messages, a string's format
 * and known values, a missing required field (walk_check.c); a key matched against its type's
 * fields (here, inline). Apart from either mode, so that the two cannot check differently. */
#ifndef JICOO_WALK_CHECK_H
#define JICOO_WALK_CHECK_H

#include <stdint.h>
#include <string.h>

#include "json.h"
#include "schema.h"

/* For the few functions of the per-key path, inlined into each walk: a call per key costs parse
 * 2 to 5% on Lua 5.4 (measured when one file held both walks and the compiler, seeing two
 * callers, stopped inlining them). */
#if defined(__GNUC__)
#define WALK_INLINE static inline __attribute__((always_inline))
#else
#define WALK_INLINE static inline
#endif

/* A string over max_string. */
int walk_too_long(json_parser *p, const unsigned char *at, size_t len);

/* A key over max_key (or max_string). */
int walk_key_too_long(json_parser *p, const unsigned char *at, size_t len);

/* A decoded string against its field's format and known values. */
int walk_check_text(json_parser *p, const schema_field *f, const json_frame *frame,
                    const unsigned char *at, const char *text, size_t len);

/* The first required field of t that is not in `present`, or NULL. */
const schema_field *walk_missing(const json_parser *p, const schema_type *t, uint32_t present);

/* Whether the n bytes at a and b are equal: field names are short, and two overlapping words
 * compare them faster than a call to memcmp. */
WALK_INLINE int walk_same(const unsigned char *a, const char *b, size_t n)
{
    uint64_t x, y, x2, y2;
    uint32_t u, v, u2, v2;
    if (n >= 8) {
        memcpy(&x, a, 8), memcpy(&y, b, 8);
        memcpy(&x2, a + n - 8, 8), memcpy(&y2, b + n - 8, 8);
        return ((x ^ y) | (x2 ^ y2)) == 0 && (n <= 16 || memcmp(a + 8, b + 8, n - 16) == 0);
    }
    if (n >= 4) {
        memcpy(&u, a, 4), memcpy(&v, b, 4);
        memcpy(&u2, a + n - 4, 4), memcpy(&v2, b + n - 4, 4);
        return ((u ^ v) | (u2 ^ v2)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

/* The field whose name stands in quotes at c, or -1. Field names are plain ASCII, so when the
 * bytes after the quote are a name and then a quote, that is the whole key and it needs no
 * scanning. Tries `guess` first: keys tend to come in the same order in every delivery. */
WALK_INLINE int walk_match_key(const schema_type *t, const unsigned char *c, const unsigned char *end,
                          size_t guess)
{
    size_t room = (size_t)(end - c), k, i = guess;
    for (k = 0; k < t->nfields; k++, i++) {
        const schema_field *f;
        if (i == t->nfields)
            i = 0;
        f = &t->fields[i];
        if (f->name_len + 2 <= room && c[1 + f->name_len] == '"' &&
            walk_same(c + 1, f->name, f->name_len))
            return (int)i;
    }
    return -1;
}

#endif
