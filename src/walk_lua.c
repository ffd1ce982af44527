/* The walk in Lua mode (walk_lua): the operations walk_body.h calls, building Lua values as the
 * input is read, tables created at their final size and keys interned at load; and the error's
 * JSON Pointer. Apart from the tape (walk_tape.c): the two modes share the control flow
 * (walk_body.h) and the checks (walk_check.c), and each defines the same operations for its own
 * output. This one reports every error, the tape's included: the tape's caller walks again here. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "walk.h"
#include "walk_check.h"

/* Each operation leaves exactly one value more on the stack than it found, or none for list_add
 * and field, which store it. */

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
