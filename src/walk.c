/* The one-pass walk: reads values with the tokenizer and builds the Lua tables as it goes,
 * checking each against its schema field (or against nothing, for plain JSON and for the
 * values of unknown keys). The first violation stops it.
 *
 * In tape mode (p->tape set, no Lua state) the same walk writes numbered slots instead, for
 * LuaJIT's FFI to build the tables from (lua/jicoo/webhook/luajit.lua). It covers the common
 * delivery and declines the rest (an unknown key holding a number, a list or an object, an
 * escaped key, a full tape, any error); the caller then walks the input again with Lua, which
 * reports or builds it. A value takes two slots:
 *   a string: (where it starts, counted from the start of the input; its length). A string
 *     with escapes is decoded into slots of its own and starts there;
 *   an object: (its first slot, 0); an array: (its first item's slot, how many items);
 *   an absent or null field: (0, -1).
 * An object of type t: one value per field, in t's order, then (the first of its keys that are
 * not in t, how many). Such a key: (where it starts, length), its value (a string or null), the
 * next one's slot (-1 after the last). An array item: its value, then the next item's slot (-1
 * after the last). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "datetime.h"
#include "walk.h"

/* Array items wait on the Lua stack in batches, so that a short array (most of them) gets a
 * table of exactly its size. */
#define WALK_BATCH 32

static int walk_value(json_parser *p, const schema_field *f, const json_frame *frame);

/* Tape mode: a delivery outside the fast path; the Lua walk will handle it. */
static int walk_decline(json_parser *p)
{
    if (p->error.code == NULL)
        p->error.code = "decline";
    return JSON_ERROR;
}

/* Tape mode: the most keys not in the type one object may have; more go to the Lua walk. */
#define WALK_TAPE_OTHER_KEYS 32

/* Tape mode: n more slots, at the returned index, or -1 when the tape is full. */
static int32_t walk_tape_slots(json_tape *tape, int32_t n)
{
    int32_t at = tape->used;
    if (n > tape->capacity - at)
        return -1;
    tape->used += n;
    return at;
}

static void walk_tape_value(json_tape *tape, double a, double b)
{
    tape->value[0] = a;
    tape->value[1] = b;
}

static void walk_push_null(json_parser *p)
{
    if (p->tape)
        walk_tape_value(p->tape, 0, -1);
    else if (p->null_index)
        lua_pushvalue(p->L, p->null_index);
    else
        lua_pushnil(p->L);
}

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

/* Tape mode: a string with escapes, decoded into slots of its own. */
static int walk_tape_decoded(json_parser *p, const json_string *s)
{
    json_tape *tape = p->tape;
    int32_t at;
    if (s->len > (size_t)tape->capacity * sizeof *tape->slots ||
        (at = walk_tape_slots(tape, (int32_t)((s->len + sizeof *tape->slots - 1) /
                                              sizeof *tape->slots))) < 0)
        return walk_decline(p);
    tape->decoded = (const char *)(tape->slots + at);
    json_decode_into((char *)(tape->slots + at), s);
    /* the distance between two objects, which the FFI adds back to the input's address */
    walk_tape_value(tape, (double)(intptr_t)((uintptr_t)tape->decoded - (uintptr_t)p->start),
                    (double)s->len);
    return 0;
}

static int walk_string(json_parser *p, const schema_field *f, const json_frame *frame)
{
    const unsigned char *at = p->cur;
    json_string s;
    if (json_scan_string(p, &s, frame))
        return JSON_ERROR;
    if (s.len > p->limits.max_string)
        return walk_too_long(p, at, s.len);
    if (!p->tape)
        json_push_string(p->L, &s);
    else if (!s.has_escapes)
        walk_tape_value(p->tape, (double)(s.raw - p->start), (double)s.raw_len);
    else if (walk_tape_decoded(p, &s))
        return JSON_ERROR;
    if (f && (f->format != SCHEMA_TEXT || f->values)) {
        size_t len = s.len;
        const char *text = !s.has_escapes ? (const char *)s.raw
                           : p->tape ? p->tape->decoded
                                     : lua_tolstring(p->L, -1, &len);
        return walk_check_text(p, f, frame, at, text, len);
    }
    return 0;
}

/* Items from base+1 to the top become one table of exactly that many slots, left at base+1. */
static int walk_flush(lua_State *L, int base)
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

/* Tape mode: the item just read, linked after the one at *last (or first). */
static int walk_tape_item(json_parser *p, int32_t *first, int32_t *last)
{
    json_tape *tape = p->tape;
    int32_t at = walk_tape_slots(tape, 3);
    if (at < 0)
        return walk_decline(p);
    tape->slots[at] = tape->value[0];
    tape->slots[at + 1] = tape->value[1];
    tape->slots[at + 2] = -1;
    if (*last >= 0)
        tape->slots[*last + 2] = (double)at;
    else
        *first = at;
    *last = at;
    return 0;
}

/* An array at p->cur; `item` describes each item (NULL: any JSON). */
static int walk_array(json_parser *p, const schema_field *item, const json_frame *frame)
{
    lua_State *L = p->L;
    int base = p->tape ? 0 : lua_gettop(L), table = 0;
    int32_t first = -1, last = -1;
    size_t n = 0;
    json_frame child;

    if (json_enter(p))
        return JSON_ERROR;
    child.parent = frame;
    child.key = NULL;
    p->cur++;
    json_skip_space(p);
    if (*p->cur != ']') {
        for (;;) {
            if (n == p->limits.max_items)
                return json_fail(p, "limit", p->cur, 0, NULL, NULL,
                                 "an array of more than max_items (%zu) items", n);
            child.index = n++;
            if (walk_value(p, item, &child))
                return JSON_ERROR;
            if (p->tape) {
                if (walk_tape_item(p, &first, &last))
                    return JSON_ERROR;
            } else if (table)
                lua_rawseti(L, table, (int)n);
            else if (n == WALK_BATCH || !lua_checkstack(L, 4))
                table = walk_flush(L, base);
            json_skip_space(p);
            if (*p->cur == ',') {
                p->cur++;
                json_skip_space(p);
                continue;
            }
            if (*p->cur == ']')
                break;
            return json_unexpected(p, "',' or ']'");
        }
    }
    p->cur++;
    if (p->tape)
        walk_tape_value(p->tape, (double)first, (double)n);
    else if (!table)
        walk_flush(L, base);
    json_leave(p);
    return 0;
}

/* Whether the n bytes at a and b are equal: field names are short, and two overlapping words
 * compare them faster than a call to memcmp. */
static int walk_same(const unsigned char *a, const char *b, size_t n)
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
static int walk_match_key(const schema_type *t, const unsigned char *c, const unsigned char *end,
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

/* The field named by a key written with escapes (e.g. "\\u0075id"), or -1. */
static int walk_match_escaped_key(lua_State *L, const schema_type *t, const json_string *key)
{
    size_t len, i;
    const char *name;
    int found = -1;
    json_push_string(L, key);
    name = lua_tolstring(L, -1, &len);
    for (i = 0; i < t->nfields && found < 0; i++)
        if (t->fields[i].name_len == len && memcmp(t->fields[i].name, name, len) == 0)
            found = (int)i;
    lua_pop(L, 1);
    return found;
}

/* Whether the key on top was already read in the object at `object` (stored there, or
 * remembered in the table of unstored keys at object + 2). */
static int walk_seen(lua_State *L, int object)
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
static void walk_remember(lua_State *L, int object)
{
    if (lua_isnil(L, object + 2)) {
        lua_newtable(L);
        lua_replace(L, object + 2);
    }
    lua_pushboolean(L, 1);
    lua_rawset(L, object + 2);
}

/* Tape mode: a key that is not one of t's fields, kept in the object's chain of other keys. A
 * repeated one goes to the Lua walk, which reports it. */
static int walk_tape_other_key(json_parser *p, const schema_type *t, const json_string *key,
                               const json_frame *child, int32_t object)
{
    json_tape *tape = p->tape;
    double *chain = tape->slots + object + 2 * (int32_t)t->nfields;
    int32_t other, at;
    if (key->has_escapes || chain[1] == WALK_TAPE_OTHER_KEYS)
        return walk_decline(p);
    for (other = (int32_t)chain[0]; other >= 0; other = (int32_t)tape->slots[other + 4])
        if (tape->slots[other + 1] == (double)key->raw_len &&
            memcmp(p->start + (size_t)tape->slots[other], key->raw, key->raw_len) == 0)
            return walk_decline(p);
    if (walk_value(p, NULL, child) || (at = walk_tape_slots(tape, 5)) < 0)
        return walk_decline(p);
    tape->slots[at] = (double)(key->raw - p->start);
    tape->slots[at + 1] = (double)key->raw_len;
    tape->slots[at + 2] = tape->value[0];
    tape->slots[at + 3] = tape->value[1];
    tape->slots[at + 4] = chain[0];
    chain[0] = (double)at;
    chain[1]++;
    tape->other_keys++;
    return 0;
}

/* A key that is not one of t's fields (t NULL: every key of a plain JSON object). */
static int walk_other_key(json_parser *p, const schema_type *t, const json_string *key,
                          const json_frame *child, int object)
{
    lua_State *L = p->L;
    if (t && p->unknown_keys == JSON_REJECT)
        return json_fail(p, "unknown_key", child->key, 1, child, NULL,
                         "the key is not part of %s", t->name);
    if (p->tape)
        return walk_tape_other_key(p, t, key, child, object);
    json_push_string(L, key);
    if (p->reject_duplicates && walk_seen(L, object))
        return json_fail(p, "duplicate", child->key, 1, child, NULL, "the key appears twice");
    if (walk_value(p, NULL, child))
        return JSON_ERROR;
    if (p->reject_duplicates && (lua_isnil(L, -1) || (t && p->unknown_keys == JSON_DROP))) {
        lua_pop(L, 1);
        walk_remember(L, object);
    } else {
        lua_rawset(L, object); /* for plain JSON a later duplicate wins, as in RFC 8259 parsers */
    }
    return 0;
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

/* The value of t's field number `field`, stored into the object at `object` (a stack index,
 * or in tape mode a slot). */
static int walk_field(json_parser *p, const schema_type *t, int field, const json_frame *child,
                      int object)
{
    const schema_field *f = &t->fields[field];
    lua_State *L = p->L;
    if (p->tape) {
        if (walk_value(p, f, child))
            return JSON_ERROR;
        p->tape->slots[object + 2 * field] = p->tape->value[0];
        p->tape->slots[object + 2 * field + 1] = p->tape->value[1];
        return 0;
    }
    lua_rawgeti(L, object + 1, field + 1);
    if (walk_value(p, f, child))
        return JSON_ERROR;
    if ((f->flags & SCHEMA_NULLABLE) && lua_isnil(L, -1))
        lua_pop(L, 2);
    else
        lua_rawset(L, object);
    return 0;
}

/* Where a new object of type t (NULL: plain JSON) is built: its stack index, with the type's
 * interned keys and metatable at object + 1 and the keys read but not stored at object + 2
 * (made when first needed); in tape mode its first slot, all fields absent. -1: no room. */
static int walk_new_object(json_parser *p, const schema_type *t)
{
    lua_State *L = p->L;
    int32_t object, i;
    if (p->tape) {
        if (!t || (object = walk_tape_slots(p->tape, 2 * (int32_t)t->nfields + 2)) < 0)
            return -1;
        for (i = 0; i < 2 * (int32_t)t->nfields; i += 2) {
            p->tape->slots[object + i] = 0;
            p->tape->slots[object + i + 1] = -1;
        }
        p->tape->slots[object + i] = -1; /* no other keys */
        p->tape->slots[object + i + 1] = 0;
        return object;
    }
    lua_createtable(L, 0, t ? (int)t->nfields : 0);
    object = lua_gettop(L);
    if (t) {
        lua_pushlightuserdata(L, (void *)(uintptr_t)t);
        lua_rawget(L, p->cache_index);
    } else {
        lua_pushnil(L);
    }
    lua_pushnil(L);
    return object;
}

/* An object at p->cur, of type t (NULL: plain JSON). */
static int walk_object(json_parser *p, const schema_type *t, const json_frame *frame)
{
    lua_State *L = p->L;
    int object;
    uint32_t present = 0;
    size_t nkeys = 0, guess = 0;
    size_t max_key = p->limits.max_key < p->limits.max_string ? p->limits.max_key
                                                               : p->limits.max_string;
    json_frame child;
    json_string key;
    const schema_field *missing;

    if (json_enter(p))
        return JSON_ERROR;
    if ((object = walk_new_object(p, t)) < 0)
        return walk_decline(p);
    child.parent = frame;
    child.index = 0;
    p->cur++;
    json_skip_space(p);
    if (*p->cur != '}') {
        for (;;) {
            int field;
            if (*p->cur != '"')
                return json_unexpected(p, "a key in double quotes");
            child.key = p->cur;
            field = t ? walk_match_key(t, p->cur, p->end, guess) : -1;
            if (field >= 0) {
                if (t->fields[field].name_len > max_key)
                    return walk_key_too_long(p, child.key, t->fields[field].name_len);
                p->cur += t->fields[field].name_len + 2;
            } else {
                if (json_scan_string(p, &key, frame))
                    return JSON_ERROR;
                if (key.len > max_key)
                    return walk_key_too_long(p, child.key, key.len);
                if (t && key.has_escapes)
                    field = p->tape ? walk_decline(p) : walk_match_escaped_key(L, t, &key);
            }
            if (++nkeys > p->limits.max_keys)
                return json_fail(p, "limit", child.key, 0, NULL, NULL,
                                 "an object of more than max_keys (%zu) keys", p->limits.max_keys);
            json_skip_space(p);
            if (*p->cur != ':')
                return json_unexpected(p, "':'");
            p->cur++;
            json_skip_space(p);

            if (field < 0) {
                if (walk_other_key(p, t, &key, &child, object))
                    return JSON_ERROR;
            } else {
                if (present & ((uint32_t)1 << field))
                    return json_fail(p, "duplicate", child.key, 1, &child, NULL,
                                     "the key appears twice");
                present |= (uint32_t)1 << field;
                guess = (size_t)field + 1;
                if (walk_field(p, t, field, &child, object))
                    return JSON_ERROR;
            }

            json_skip_space(p);
            if (*p->cur == ',') {
                p->cur++;
                json_skip_space(p);
                continue;
            }
            if (*p->cur == '}')
                break;
            return json_unexpected(p, "',' or '}'");
        }
    }
    if (t && (missing = walk_missing(p, t, present)) != NULL)
        return json_fail(p, "missing", p->cur, 1, frame, missing->name,
                         "the required key \"%s\" is absent", missing->name);
    p->cur++;
    json_leave(p);
    if (p->tape) {
        walk_tape_value(p->tape, object, 0);
        return 0;
    }
    if (t) {
        lua_rawgeti(L, object + 1, (int)t->nfields + 1);
        lua_setmetatable(L, object);
    }
    lua_settop(L, object);
    return 0;
}

/* Any JSON value at p->cur. */
static int walk_any(json_parser *p, const json_frame *frame)
{
    int literal;
    switch (*p->cur) {
    case '{': return walk_object(p, NULL, frame);
    case '[': return walk_array(p, NULL, frame);
    case '"': return walk_string(p, NULL, frame);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return json_number(p, frame);
    default:
        literal = json_literal(p);
        if (literal == JSON_ERROR)
            return JSON_ERROR;
        if (literal == JSON_LITERAL_NULL)
            walk_push_null(p);
        else
            lua_pushboolean(p->L, literal);
        return 0;
    }
}

/* Tape mode: the value of a key not in the type, when it is a string or null. */
static int walk_tape_any(json_parser *p, const json_frame *frame)
{
    if (*p->cur == '"')
        return walk_string(p, NULL, frame);
    if (*p->cur != 'n' || json_literal(p) != JSON_LITERAL_NULL)
        return walk_decline(p);
    walk_push_null(p);
    return 0;
}

/* The lenient level's reading of a lone string where a list of strings belongs. */
static int walk_string_as_list(json_parser *p, const schema_field *f, const json_frame *frame)
{
    int32_t first = -1, last = -1;
    if (walk_string(p, f->items, frame))
        return JSON_ERROR;
    if (p->tape) {
        if (walk_tape_item(p, &first, &last))
            return JSON_ERROR;
        walk_tape_value(p->tape, first, 1);
        return 0;
    }
    lua_createtable(p->L, 1, 0);
    lua_insert(p->L, -2);
    lua_rawseti(p->L, -2, 1);
    return 0;
}

/* The value at p->cur, as field f says (f NULL: any JSON). Pushes exactly one Lua value. */
static int walk_value(json_parser *p, const schema_field *f, const json_frame *frame)
{
    const char *got;
    if (++p->values > p->limits.max_values)
        return json_fail(p, "limit", p->cur, 0, NULL, NULL, "more than max_values (%zu) values",
                         p->limits.max_values);
    if (!f)
        return p->tape ? walk_tape_any(p, frame) : walk_any(p, frame);
    switch (f->kind) {
    case SCHEMA_STRING:
        if (*p->cur == '"')
            return walk_string(p, f, frame);
        break;
    case SCHEMA_OBJECT:
        if (*p->cur == '{')
            return walk_object(p, f->type, frame);
        break;
    case SCHEMA_ARRAY:
        if (*p->cur == '[')
            return walk_array(p, f->items, frame);
        if (*p->cur == '"' && (f->flags & SCHEMA_STRING_AS_LIST) && !p->strict)
            return walk_string_as_list(p, f, frame);
        break;
    }
    got = json_type_name(p);
    if (!got)
        return json_unexpected(p, "a value");
    if (*p->cur == 'n' && (f->flags & SCHEMA_NULLABLE)) {
        p->cur += 4;
        walk_push_null(p);
        return 0;
    }
    return json_fail(p, "type", p->cur, 1, frame, NULL, "expected %s%s, got %s",
                     schema_kind_name(f->kind), (f->flags & SCHEMA_NULLABLE) ? " or null" : "", got);
}

int walk_document(json_parser *p, const schema_type *root)
{
    const char *got;
    json_skip_space(p);
    if (root) {
        if (*p->cur != '{') {
            got = json_type_name(p);
            if (!got)
                return json_unexpected(p, "a JSON object");
            return json_fail(p, "type", p->cur, 1, NULL, NULL, "expected object, got %s", got);
        }
        p->values++;
        if (walk_object(p, root, NULL))
            return JSON_ERROR;
    } else if (walk_value(p, NULL, NULL)) {
        return JSON_ERROR;
    }
    json_skip_space(p);
    if (p->cur != p->end)
        return json_unexpected(p, "the end of the input");
    return 0;
}
