/* The module jicoo.webhook.core: the entry points and their results; the options they take are
 * core_options.c's. Bad input returns nil, msg, info; misuse raises; out-of-memory raises through
 * Lua. */
#define _POSIX_C_SOURCE 200809L

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "core_options.h"
#include "datetime.h"
#include "files.h"
#include "hash_slot.h"
#include "identity.h"
#include "x509.h"
#include "signature.h"
#include "tape.h"
#include "walk.h"

#if defined(__GNUC__)
#define CORE_EXPORT __attribute__((visibility("default")))
#else
#define CORE_EXPORT
#endif

/* Slots of parse's and decode's stack: the input and the options. */
enum { CORE_INPUT = 1, CORE_OPTIONS = 2 };

/* Appends a pointer for a one-line message: control bytes, which a key may hold, escaped. */
static void core_add_printable(luaL_Buffer *b, const char *s, size_t len)
{
    char escaped[8];
    size_t i;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F) {
            snprintf(escaped, sizeof escaped, "\\u%04X", c);
            luaL_addstring(b, escaped);
        } else {
            luaL_addchar(b, (char)c);
        }
    }
}

/* Pushes nil, msg, info for the error the walk recorded. */
static int core_fail(lua_State *L, const walk_lua *w)
{
    const json_error *e = &w->p.error;
    char offset[32];
    const char *path;
    size_t path_len = 0;
    luaL_Buffer b;

    snprintf(offset, sizeof offset, "%zu", e->offset);
    path = w->path_index ? lua_tolstring(L, w->path_index, &path_len) : NULL;
    lua_pushnil(L);
    luaL_buffinit(L, &b);               /* msg: "code: path: detail (offset n)" */
    luaL_addstring(&b, e->code);
    luaL_addstring(&b, ": ");
    if (path) {
        if (path_len)
            core_add_printable(&b, path, path_len);
        else
            luaL_addstring(&b, "(root)");
        luaL_addstring(&b, ": ");
    }
    luaL_addstring(&b, e->detail);
    luaL_addstring(&b, " (offset ");
    luaL_addstring(&b, offset);
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    lua_createtable(L, 0, 3);           /* nil, msg, info */
    lua_pushstring(L, e->code);
    lua_setfield(L, -2, "code");
    if (path) {
        lua_pushvalue(L, w->path_index);
        lua_setfield(L, -2, "path");
    }
    lua_pushinteger(L, (lua_Integer)e->offset);
    lua_setfield(L, -2, "offset");
    return 3;
}

/* A parser over the len bytes at s (s[len] is NUL, as in every Lua string), as s says. Field by
 * field, not a memset: the error's detail (200 bytes) is only read once written. */
static void core_init_parser(json_parser *p, const core_settings *s, const char *input,
                             size_t len, unsigned call)
{
    p->depth = p->values = 0;
    p->error.code = NULL;
    p->error.offset = 0;
    p->start = p->cur = (const unsigned char *)input;
    p->end = p->start + len;
    p->limits = s->limits;
    p->strict = s->level == CORE_STRICT;
    p->unknown_keys = (json_unknown_keys)s->unknown_keys;
    p->reject_duplicates = call != CORE_DECODE;
}

/* The walk of the string at slot 1 for `call`, with the settings read from the options at
 * `options`: pushes its value, or nil, msg, info. Upvalue 1: the cache. */
static int core_walk(lua_State *L, unsigned call, const core_settings *s, int options)
{
    size_t len;
    const char *input = lua_tolstring(L, CORE_INPUT, &len);
    walk_lua w;

    core_init_parser(&w.p, s, input, len, call);
    if (lua_istable(L, options))    /* what a JSON null becomes */
        lua_getfield(L, options, "null");
    else
        lua_pushnil(L);
    if (lua_isnil(L, -1) && call == CORE_DECODE) { /* plain JSON keeps nulls by default */
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
    }
    w.L = L;
    w.null_index = lua_isnil(L, -1) ? 0 : lua_gettop(L);
    w.cache_index = lua_upvalueindex(1);
    if (walk_lua_document(&w, call == CORE_DECODE ? NULL : &schema_event))
        return core_fail(L, &w);
    return 1;
}

/* decode(s [, opts]) and parse(body [, opts]). */
static int core_read_and_walk(lua_State *L, unsigned call)
{
    core_settings s;
    luaL_checktype(L, CORE_INPUT, LUA_TSTRING);
    lua_settop(L, CORE_OPTIONS);
    core_read_options(L, CORE_OPTIONS, call, &s);
    return core_walk(L, call, &s, CORE_OPTIONS);
}

static int core_decode(lua_State *L)
{
    return core_read_and_walk(L, CORE_DECODE);
}

static int core_parse(lua_State *L)
{
    return core_read_and_walk(L, CORE_PARSE);
}

/* verify(body, header, secrets [, opts]). Upvalue: the HMAC template. */
static int core_verify(lua_State *L)
{
    signature_request r;
    core_settings s;
    signature_read_request(L, &r);
    core_read_options(L, 4, CORE_VERIFY, &s);
    r.tolerance = s.tolerance;
    r.now = s.now;
    return signature_verify(L, lua_upvalueindex(1), &r);
}

/* construct(body, header, secrets [, opts]): verify, then parse only what verified, in one
 * call; every option is checked before either. Upvalues: the cache, the HMAC template. */
static int core_construct(lua_State *L)
{
    signature_request r;
    core_settings s;
    lua_settop(L, 4);
    signature_read_request(L, &r);
    core_read_options(L, 4, CORE_CONSTRUCT, &s);
    r.tolerance = s.tolerance;
    r.now = s.now;
    if (signature_verify(L, lua_upvalueindex(2), &r) != 1) { /* false, msg, code */
        lua_pushnil(L);                                        /* nil, msg, {code = code} */
        lua_pushvalue(L, -3);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, -4);
        lua_setfield(L, -2, "code");
        return 3;
    }
    lua_pop(L, 1);
    return core_walk(L, CORE_CONSTRUCT, &s, 4);
}

/* The tape's parse (tape.h), for LuaJIT's FFI: no Lua state. */
static int core_tape_parse(const char *body, size_t len, int level, double *slots,
                           int32_t capacity)
{
    core_settings s;
    walk_tape w;
    if (level < CORE_LENIENT || level > CORE_STRICT || capacity < 0)
        return -1;
    core_default_settings(&s);
    s.level = level;
    core_init_parser(&w.p, &s, body, len, CORE_PARSE);
    w.slots = slots;
    w.capacity = capacity;
    if (walk_tape_document(&w, &schema_event))
        return w.full ? JICOO_TAPE_FULL : -1;
    return w.other_keys;
}

static const jicoo_tape core_tape = {core_tape_parse};

/* utf8_repair(s): s with every byte that is not part of a well-formed UTF-8 sequence (the rule
 * json.c holds strings to) replaced by U+FFFD; s itself when there is none. */
static int core_utf8_repair(lua_State *L)
{
    size_t len, n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    const unsigned char *c = s, *end = s + len, *run;
    luaL_Buffer b;

    while (c < end && (*c < 0x80 || (n = json_utf8_length(c)) != 0)) /* s[len] is NUL */
        c += *c < 0x80 ? 1 : n;
    if (c == end) {
        lua_settop(L, 1);
        return 1;
    }
    luaL_buffinit(L, &b);
    for (run = s; c < end;) {
        if (*c < 0x80) {
            c++;
        } else if ((n = json_utf8_length(c)) != 0) {
            c += n;
        } else {
            luaL_addlstring(&b, (const char *)run, (size_t)(c - run));
            luaL_addlstring(&b, "\xEF\xBF\xBD", 3);
            run = ++c;
        }
    }
    luaL_addlstring(&b, (const char *)run, (size_t)(c - run));
    luaL_pushresult(&b);
    return 1;
}

/* now(): Unix time in seconds, to the microsecond: a clock for leases and retries where nginx's
 * is not there (os.time has whole seconds). */
static int core_now(lua_State *L)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return luaL_error(L, "core.now: the clock cannot be read");
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)(ts.tv_nsec / 1000) / 1e6);
    return 1;
}

static int core_time(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len), *problem;
    double epoch;
    if ((problem = datetime_check(s, len, &epoch)) != NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "not an RFC 3339 date-time: %s", problem);
        return 2;
    }
#if COMPAT_HAS_INTEGERS
    if (epoch == (lua_Number)(lua_Integer)epoch) { /* no fraction: an integer, as os.time gives */
        lua_pushinteger(L, (lua_Integer)epoch);
        return 1;
    }
#endif
    lua_pushnumber(L, (lua_Number)epoch);
    return 1;
}

/* A typed table's __index until its methods are in place: the first key a table of this type
 * misses (a method, or a field the delivery left out) loads the methods (the Lua module
 * jicoo.webhook.payload.types, which jicoo.webhook and the router load first anyway) and makes
 * them the metatable's __index, so that a table parsed by code that loaded only the core still
 * has them. Upvalues: the type's name, and whether loading them failed (then keys just miss). */
static int core_methods_index(lua_State *L)
{
    if (lua_toboolean(L, lua_upvalueindex(2)))
        return 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "jicoo.webhook.payload.types");
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
        lua_pushboolean(L, 1);
        lua_replace(L, lua_upvalueindex(2));   /* the core alone, without its Lua modules */
        return 0;
    }
    lua_getfield(L, -1, "methods");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_gettable(L, -2);                       /* t, k, types, methods, methods[name] */
    if (!lua_istable(L, -1))
        return 0;
    if (lua_getmetatable(L, 1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "__index");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
}

/* Per type: its field names (interned once here, not at each parse) and its metatable, in
 * the cache keyed by the type's address; metatables also in the table on top. */
static void core_push_cache(lua_State *L)
{
    const schema_type *const *t;
    size_t i;
    lua_newtable(L);                           /* metatables */
    lua_newtable(L);                           /* metatables, cache */
    for (t = schema_types; *t; t++) {
        lua_pushlightuserdata(L, (void *)(uintptr_t)*t);
        lua_createtable(L, (int)(*t)->nfields + 1, 0);
        for (i = 0; i < (*t)->nfields; i++) {
            lua_pushlstring(L, (*t)->fields[i].name, (*t)->fields[i].name_len);
            lua_rawseti(L, -2, (int)i + 1);
        }
        luaL_newmetatable(L, (*t)->metatable); /* ..., key, entry, mt */
        lua_pushstring(L, (*t)->metatable);
        lua_setfield(L, -2, "__name");         /* Lua 5.1 and LuaJIT do not set it */
        lua_pushstring(L, (*t)->name);
        lua_pushboolean(L, 0);
        lua_pushcclosure(L, core_methods_index, 2);
        lua_setfield(L, -2, "__index");
        lua_pushvalue(L, -1);
        lua_setfield(L, -6, (*t)->name);       /* metatables[name] = mt */
        lua_rawseti(L, -2, (int)(*t)->nfields + 1);
        lua_rawset(L, -3);                     /* cache[type] = entry */
    }
}

CORE_EXPORT int luaopen_jicoo_webhook_core(lua_State *L);

int luaopen_jicoo_webhook_core(lua_State *L)
{
    static const luaL_Reg walkers[] = {
        {"decode", core_decode}, {"parse", core_parse}, {NULL, NULL}};
    const luaL_Reg *r;
    int module, cache;

    lua_createtable(L, 0, 24);
    module = lua_gettop(L);
    core_push_cache(L);          /* module, metatables, cache */
    cache = lua_gettop(L);
    lua_pushvalue(L, cache - 1);
    lua_setfield(L, module, "metatables");
    for (r = walkers; r->name; r++) {
        lua_pushvalue(L, cache);
        lua_pushcclosure(L, r->func, 1);
        lua_setfield(L, module, r->name);
    }

    lua_pushcfunction(L, core_time);
    lua_setfield(L, module, "time");
    lua_pushcfunction(L, core_now);
    lua_setfield(L, module, "now");
    lua_pushcfunction(L, core_check_options);
    lua_setfield(L, module, "check_options");
    lua_pushcfunction(L, core_utf8_repair);
    lua_setfield(L, module, "utf8_repair");
    lua_pushlightuserdata(L, NULL); /* equal to cjson.null */
    lua_setfield(L, module, "null");
    schema_push_description(L);
    lua_setfield(L, module, "schema");
    core_push_options(L);        /* module, metatables, cache, options, limits */
    lua_setfield(L, module, "limits");
    lua_setfield(L, module, "options");
    lua_createtable(L, 0, 2);    /* for LuaJIT's FFI only (luajit.lua) */
    lua_pushliteral(L, TAPE_TEXT(TAPE_DECLARATIONS));
    lua_setfield(L, -2, "cdef");
    lua_pushlightuserdata(L, (void *)(uintptr_t)&core_tape);
    lua_setfield(L, -2, "api");
    lua_setfield(L, module, "tape");

    lua_pushvalue(L, module);
    files_register(L);
    hash_slot_register(L);
    identity_register(L);
    x509_register(L);
    signature_register(L);       /* module, metatables, cache, module, template */
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, core_verify, 1);
    lua_setfield(L, module, "verify");
    lua_pushvalue(L, cache);
    lua_insert(L, -2);
    lua_pushcclosure(L, core_construct, 2);
    lua_setfield(L, module, "construct");
    lua_settop(L, module);
    return 1;
}
