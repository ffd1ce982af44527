/* The one-pass walk: reads values with the tokenizer and checks each against its schema field
 * (or against nothing, for plain JSON and for the values of unknown keys) as it goes; the first
 * violation stops it. Its control flow is walk_body.h, compiled here twice, once for each thing
 * it can build:
 *   - Lua values (walk_lua): tables created at their final size, keys interned at load;
 *   - the tape (walk_tape, tape.h), for LuaJIT's FFI: numbered slots, no Lua state in reach.
 *     It covers the common delivery and declines the rest (an unknown key holding a number, a
 *     list or an object, an escaped key, any error); its caller then walks the input again
 *     with Lua, which reports or builds it. A tape too small is told apart: its caller walks
 *     again into a bigger one. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "datetime.h"
#include "tape.h"
#include "walk.h"

/* ------------------------------------------------------------------------------------------ */
/* Checks both modes share: they build nothing. */

/* For the few functions of the per-key path: with two callers (one walk for each mode) the
 * compiler stops inlining them, and a call per key costs parse 2 to 5% on Lua 5.4. */
#if defined(__GNUC__)
#define WALK_INLINE static inline __attribute__((always_inline))
#else
#define WALK_INLINE static inline
#endif

static int walk_too_long(json_parser *p, const unsigned char *at, size_t len)
{
    return json_fail(p, "limit", at, 0, NULL, NULL, "a string of %zu bytes is over max_string (%zu)",
                     len, p->limits.max_string);
}

/* A key is bounded by max_string like any string, and by max_key. Known keys count too, so that
 * a limit means the same in parse and in decode. */
static int walk_key_too_long(json_parser *p, const unsigned char *at, size_t len)
{
    if (len > p->limits.max_string)
        return walk_too_long(p, at, len);
    return json_fail(p, "limit", at, 0, NULL, NULL, "a key of %zu bytes is over max_key (%zu)",
                     len, p->limits.max_key);
}

/* A decoded string against its field's format and known values. */
static int walk_check_text(json_parser *p, const schema_field *f, const json_frame *frame,
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

/* The first required field of t that is not in `present`, or NULL. */
static const schema_field *walk_missing(const json_parser *p, const schema_type *t,
                                        uint32_t present)
{
    size_t i;
    unsigned required = SCHEMA_REQUIRED | (p->strict ? SCHEMA_STRICT_REQUIRED : 0);
    for (i = 0; i < t->nfields; i++)
        if (!(present & ((uint32_t)1 << i)) && (t->fields[i].flags & required))
            return &t->fields[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Building Lua values. Each operation leaves exactly one value more on the stack than it found,
 * or none for list_add and field, which store it. */

/* Array items wait on the Lua stack in batches, so that a short array (most of them) gets a
 * table of exactly its size. */
#define WALK_BATCH 32

/* Stack slots one nesting level may use: its table, its type's keys, the keys it saw, a key
 * and a value, the copies made while an array batch becomes a table, and some headroom. */
#define WALK_STACK_PER_LEVEL 8

typedef struct walk_lua_list {
    int base;  /* the stack top before the first item */
    int table; /* the table the items go into once a batch is full; 0 before */
} walk_lua_list;

static int walk_lua_value(walk_lua *w, const schema_field *f, const json_frame *frame);
static int walk_lua_string(walk_lua *w, const schema_field *f, const json_frame *frame);
static int walk_lua_array(walk_lua *w, const schema_field *item, const json_frame *frame);
static int walk_lua_object(walk_lua *w, const schema_type *t, const json_frame *frame);

/* Appends the pointer of frame f: its parent's, then "/" and its own token. */
static void walk_lua_add_path(luaL_Buffer *b, const json_frame *f)
{
    char index[32];
    if (f == NULL)
        return;
    walk_lua_add_path(b, f->parent);
    luaL_addchar(b, '/');
    if (f->key) {
        json_add_pointer_token(b, f->key);
    } else {
        snprintf(index, sizeof index, "%zu", f->index);
        luaL_addstring(b, index);
    }
}

/* The tokenizer's json_path_fn: the error's pointer, left on the stack. */
static void walk_lua_record_path(json_parser *p, const json_frame *frame, const char *leaf)
{
    walk_lua *w = (walk_lua *)(void *)p; /* p is w's first member */
    luaL_Buffer b;
    luaL_buffinit(w->L, &b);
    walk_lua_add_path(&b, frame);
    if (leaf) {
        luaL_addchar(&b, '/');
        luaL_addstring(&b, leaf);
    }
    luaL_pushresult(&b);
    w->path_index = lua_gettop(w->L);
}

static int walk_lua_enter(walk_lua *w)
{
    if (json_enter(&w->p))
        return JSON_ERROR;
    if (!lua_checkstack(w->L, WALK_STACK_PER_LEVEL))
        return json_fail(&w->p, "limit", w->p.cur, 0, NULL, NULL,
                         "nested too deep for the Lua stack");
    return 0;
}

static int walk_lua_put_string(walk_lua *w, const json_string *s, const char **text)
{
    json_push_string(w->L, s);
    *text = s->has_escapes ? lua_tostring(w->L, -1) : (const char *)s->raw;
    return 0;
}

static void walk_lua_put_null(walk_lua *w)
{
    if (w->null_index)
        lua_pushvalue(w->L, w->null_index);
    else
        lua_pushnil(w->L);
}

static void walk_lua_list_begin(walk_lua *w, walk_lua_list *list)
{
    list->base = lua_gettop(w->L);
    list->table = 0;
}

/* Items from base+1 to the top become one table of exactly that many slots, left at base+1. */
static int walk_lua_flush(lua_State *L, int base)
{
    int n = lua_gettop(L) - base, i;
    lua_createtable(L, n, 0);
    for (i = 1; i <= n; i++) {
        lua_pushvalue(L, base + i);
        lua_rawseti(L, -2, i);
    }
    if (n > 0) {
        lua_replace(L, base + 1);
        lua_settop(L, base + 1);
    }
    return base + 1;
}

/* The item just pushed, the list's nth. */
static int walk_lua_list_add(walk_lua *w, walk_lua_list *list, size_t n)
{
    if (list->table)
        lua_rawseti(w->L, list->table, (int)n);
    else if (n == WALK_BATCH || !lua_checkstack(w->L, 4))
        list->table = walk_lua_flush(w->L, list->base);
    return 0;
}

static void walk_lua_list_end(walk_lua *w, walk_lua_list *list, size_t n)
{
    (void)n;
    if (!list->table)
        walk_lua_flush(w->L, list->base);
}

/* Where a new object of type t (NULL: plain JSON) is built: its stack index, with the type's
 * interned keys and metatable at object + 1 and the keys read but not stored at object + 2
 * (made when first needed). */
static int walk_lua_new_object(walk_lua *w, const schema_type *t)
{
    lua_State *L = w->L;
    int object;
    lua_createtable(L, 0, t ? (int)t->nfields : 0);
    object = lua_gettop(L);
    if (t) {
        lua_pushlightuserdata(L, (void *)(uintptr_t)t);
        lua_rawget(L, w->cache_index);
    } else {
        lua_pushnil(L);
    }
    lua_pushnil(L);
    return object;
}

/* The field of t named by a key written with escapes (e.g. "\\u0075id"), or -1. */
static int walk_lua_escaped_key(walk_lua *w, const schema_type *t, const json_string *key,
                                int *field)
{
    size_t len, i;
    const char *name;
    json_push_string(w->L, key);
    name = lua_tolstring(w->L, -1, &len);
    *field = -1;
    for (i = 0; i < t->nfields && *field < 0; i++)
        if (t->fields[i].name_len == len && memcmp(t->fields[i].name, name, len) == 0)
            *field = (int)i;
    lua_pop(w->L, 1);
    return 0;
}

/* Whether the key on top was already read in the object at `object` (stored there, or
 * remembered in the table of unstored keys at object + 2). */
static int walk_lua_seen(lua_State *L, int object)
{
    int seen;
    lua_pushvalue(L, -1);
    lua_rawget(L, object);
    seen = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!seen && !lua_isnil(L, object + 2)) {
        lua_pushvalue(L, -1);
        lua_rawget(L, object + 2);
        seen = !lua_isnil(L, -1);
        lua_pop(L, 1);
    }
    return seen;
}

/* Remembers the key on top (popping it) as read but not stored: a null or a dropped key. */
static void walk_lua_remember(lua_State *L, int object)
{
    if (lua_isnil(L, object + 2)) {
        lua_newtable(L);
        lua_replace(L, object + 2);
    }
    lua_pushboolean(L, 1);
    lua_rawset(L, object + 2);
}

/* A key that is not one of t's fields (t NULL: every key of a plain JSON object). */
static int walk_lua_other_key(walk_lua *w, const schema_type *t, const json_string *key,
                              const json_frame *child, int object)
{
    lua_State *L = w->L;
    json_parser *p = &w->p;
    json_push_string(L, key);
    if (p->reject_duplicates && walk_lua_seen(L, object))
        return json_fail(p, "duplicate", child->key, 1, child, NULL, "the key appears twice");
    if (walk_lua_value(w, NULL, child))
        return JSON_ERROR;
    if (p->reject_duplicates && (lua_isnil(L, -1) || (t && p->unknown_keys == JSON_DROP))) {
        lua_pop(L, 1);
        walk_lua_remember(L, object);
    } else {
        lua_rawset(L, object); /* for plain JSON a later duplicate wins, as in RFC 8259 parsers */
    }
    return 0;
}

/* The value of t's field number `field`, stored into the object at `object`. */
static int walk_lua_field(walk_lua *w, const schema_type *t, int field, const json_frame *child,
                          int object)
{
    const schema_field *f = &t->fields[field];
    lua_State *L = w->L;
    lua_rawgeti(L, object + 1, field + 1);
    if (walk_lua_value(w, f, child))
        return JSON_ERROR;
    if ((f->flags & SCHEMA_NULLABLE) && lua_isnil(L, -1))
        lua_pop(L, 2);
    else
        lua_rawset(L, object);
    return 0;
}

static void walk_lua_end_object(walk_lua *w, const schema_type *t, int object)
{
    if (t) {
        lua_rawgeti(w->L, object + 1, (int)t->nfields + 1);
        lua_setmetatable(w->L, object);
    }
    lua_settop(w->L, object);
}

/* Any JSON value at p->cur. */
static int walk_lua_any(walk_lua *w, const json_frame *frame)
{
    int literal;
    switch (*w->p.cur) {
    case '{': return walk_lua_object(w, NULL, frame);
    case '[': return walk_lua_array(w, NULL, frame);
    case '"': return walk_lua_string(w, NULL, frame);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return json_number(w->L, &w->p);
    default:
        literal = json_literal(&w->p);
        if (literal == JSON_ERROR)
            return JSON_ERROR;
        if (literal == JSON_LITERAL_NULL)
            walk_lua_put_null(w);
        else
            lua_pushboolean(w->L, literal);
        return 0;
    }
}

#define WALK(name) walk_lua_##name
#define WALK_STATE walk_lua
#define WALK_LIST walk_lua_list
#include "walk_body.h"
#undef WALK
#undef WALK_STATE
#undef WALK_LIST

int walk_lua_document(walk_lua *w, const schema_type *root)
{
    w->p.record_path = walk_lua_record_path;
    w->path_index = 0;
    return walk_lua_root(w, root);
}

/* ------------------------------------------------------------------------------------------ */
/* Writing the tape (layout in tape.h). Each operation puts the value it reads in w->value, for
 * its parent to store, or stores it. */

/* The most keys not in the type one object may have; more go to the Lua walk. */
#define WALK_TAPE_OTHER_KEYS 32

typedef struct walk_tape_list {
    int32_t first, last; /* the first and the last item's slots; JICOO_TAPE_NONE before */
} walk_tape_list;

static int walk_tape_value(walk_tape *w, const schema_field *f, const json_frame *frame);
static int walk_tape_string(walk_tape *w, const schema_field *f, const json_frame *frame);

/* A delivery outside the fast path; the Lua walk will handle it. */
static int walk_tape_decline(walk_tape *w)
{
    if (w->p.error.code == NULL)
        w->p.error.code = "decline";
    return JSON_ERROR;
}

/* n more slots, at the returned index, or -1 when the tape is full. */
static int32_t walk_tape_slots(walk_tape *w, int32_t n)
{
    int32_t at = w->used;
    if (n > w->capacity - at) {
        w->full = 1;
        return -1;
    }
    w->used += n;
    return at;
}

/* The value just read, as its parent stores it. */
static void walk_tape_put(walk_tape *w, double a, double b)
{
    w->value[0] = a;
    w->value[JICOO_TAPE_LENGTH] = b;
}

static int walk_tape_enter(walk_tape *w)
{
    return json_enter(&w->p);
}

/* A string with escapes, decoded into slots of its own. */
static int walk_tape_decoded(walk_tape *w, const json_string *s)
{
    int32_t at;
    if (s->len > (size_t)w->capacity * sizeof *w->slots) {
        w->full = 1;
        return walk_tape_decline(w);
    }
    if ((at = walk_tape_slots(w, (int32_t)((s->len + sizeof *w->slots - 1) / sizeof *w->slots))) < 0)
        return walk_tape_decline(w);
    w->decoded = (const char *)(w->slots + at);
    json_decode_into((char *)(w->slots + at), s);
    /* the distance between two objects, which the FFI adds back to the input's address */
    walk_tape_put(w, (double)(intptr_t)((uintptr_t)w->decoded - (uintptr_t)w->p.start),
                  (double)s->len);
    return 0;
}

static int walk_tape_put_string(walk_tape *w, const json_string *s, const char **text)
{
    if (s->has_escapes) {
        if (walk_tape_decoded(w, s))
            return JSON_ERROR;
        *text = w->decoded;
        return 0;
    }
    walk_tape_put(w, (double)(s->raw - w->p.start), (double)s->raw_len);
    *text = (const char *)s->raw;
    return 0;
}

static void walk_tape_put_null(walk_tape *w)
{
    walk_tape_put(w, 0, JICOO_TAPE_NONE);
}

static void walk_tape_list_begin(walk_tape *w, walk_tape_list *list)
{
    (void)w;
    list->first = list->last = JICOO_TAPE_NONE;
}

/* The item just read, linked after the list's last one. */
static int walk_tape_list_add(walk_tape *w, walk_tape_list *list, size_t n)
{
    int32_t at = walk_tape_slots(w, JICOO_TAPE_ITEM);
    (void)n;
    if (at < 0)
        return walk_tape_decline(w);
    w->slots[at] = w->value[0];
    w->slots[at + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    w->slots[at + JICOO_TAPE_ITEM_NEXT] = JICOO_TAPE_NONE;
    if (list->last >= 0)
        w->slots[list->last + JICOO_TAPE_ITEM_NEXT] = (double)at;
    else
        list->first = at;
    list->last = at;
    return 0;
}

static void walk_tape_list_end(walk_tape *w, walk_tape_list *list, size_t n)
{
    walk_tape_put(w, (double)list->first, (double)n);
}

/* The first slot of a new object of type t, all fields absent and no other keys; -1 (declined)
 * for plain JSON or when the tape is full. */
static int walk_tape_new_object(walk_tape *w, const schema_type *t)
{
    int32_t object, i, n;
    if (!t)
        return walk_tape_decline(w);
    n = JICOO_TAPE_VALUE * (int32_t)t->nfields;
    if ((object = walk_tape_slots(w, n + JICOO_TAPE_VALUE)) < 0)
        return walk_tape_decline(w);
    for (i = 0; i < n; i += JICOO_TAPE_VALUE) {
        w->slots[object + i] = 0;
        w->slots[object + i + JICOO_TAPE_LENGTH] = JICOO_TAPE_NONE;
    }
    w->slots[object + n] = JICOO_TAPE_NONE; /* the first other key */
    w->slots[object + n + JICOO_TAPE_LENGTH] = 0;
    return object;
}

/* An escaped key goes to the Lua walk, which decodes it. */
static int walk_tape_escaped_key(walk_tape *w, const schema_type *t, const json_string *key,
                                 int *field)
{
    (void)t, (void)key, (void)field;
    return walk_tape_decline(w);
}

/* A key that is not one of t's fields, kept in the object's chain of other keys (its value a
 * string or null). A repeated one goes to the Lua walk, which reports it. */
static int walk_tape_other_key(walk_tape *w, const schema_type *t, const json_string *key,
                               const json_frame *child, int object)
{
    double *chain = w->slots + object + JICOO_TAPE_VALUE * (int32_t)t->nfields;
    int32_t other, at;
    if (chain[JICOO_TAPE_LENGTH] == WALK_TAPE_OTHER_KEYS)
        return walk_tape_decline(w);
    for (other = (int32_t)chain[0]; other >= 0;
         other = (int32_t)w->slots[other + JICOO_TAPE_OTHER_NEXT])
        if (w->slots[other + JICOO_TAPE_LENGTH] == (double)key->raw_len &&
            memcmp(w->p.start + (size_t)w->slots[other], key->raw, key->raw_len) == 0)
            return walk_tape_decline(w);
    if (walk_tape_value(w, NULL, child) || (at = walk_tape_slots(w, JICOO_TAPE_OTHER)) < 0)
        return walk_tape_decline(w);
    w->slots[at] = (double)(key->raw - w->p.start);
    w->slots[at + JICOO_TAPE_LENGTH] = (double)key->raw_len;
    w->slots[at + JICOO_TAPE_OTHER_VALUE] = w->value[0];
    w->slots[at + JICOO_TAPE_OTHER_VALUE + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    w->slots[at + JICOO_TAPE_OTHER_NEXT] = chain[0];
    chain[0] = (double)at;
    chain[JICOO_TAPE_LENGTH]++;
    w->other_keys++;
    return 0;
}

/* The value of t's field number `field`, stored in its two slots of the object at `object`. */
static int walk_tape_field(walk_tape *w, const schema_type *t, int field, const json_frame *child,
                           int object)
{
    int32_t at = object + JICOO_TAPE_VALUE * field;
    if (walk_tape_value(w, &t->fields[field], child))
        return JSON_ERROR;
    w->slots[at] = w->value[0];
    w->slots[at + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    return 0;
}

static void walk_tape_end_object(walk_tape *w, const schema_type *t, int object)
{
    (void)t;
    walk_tape_put(w, object, 0);
}

/* The value of a key not in the type: a string or null; anything else is declined. */
static int walk_tape_any(walk_tape *w, const json_frame *frame)
{
    if (*w->p.cur == '"')
        return walk_tape_string(w, NULL, frame);
    if (*w->p.cur != 'n' || json_literal(&w->p) != JSON_LITERAL_NULL)
        return walk_tape_decline(w);
    walk_tape_put_null(w);
    return 0;
}

#define WALK(name) walk_tape_##name
#define WALK_STATE walk_tape
#define WALK_LIST walk_tape_list
#include "walk_body.h"
#undef WALK
#undef WALK_STATE
#undef WALK_LIST

int walk_tape_document(walk_tape *w, const schema_type *root)
{
    w->p.record_path = NULL;
    w->used = 0;
    w->full = 0;
    w->other_keys = 0;
    return walk_tape_root(w, root);
}
