/* The module jicoo.webhook.core: option reading, the entry points, and their results.
 * Bad input returns nil, msg, info; misuse raises; out-of-memory raises through Lua. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "datetime.h"
#include "files.h"
#include "signature.h"
#include "walk.h"

#if defined(__GNUC__)
#define CORE_EXPORT __attribute__((visibility("default")))
#else
#define CORE_EXPORT
#endif

/* The longest key the runtime's string hash reads whole. Past it, the hash samples some bytes,
 * and keys that differ only in the others all land in one chain of the string table (or of a
 * table's hash part), each new key compared with every one before it: LuaJIT (OpenResty's
 * luajit2) samples strings of 128 bytes or more, Lua 5.1 to 5.3 every string of 32 or more,
 * Lua 5.4 none. */
#if defined(JICOO_LUAJIT) || LUA_VERSION_NUM >= 504
#define CORE_MAX_KEY 127
#else
#define CORE_MAX_KEY 31
#endif

/* The defaults of every limit (README "Limits"), in the order of json_limits. */
static const struct core_limit {
    const char *name;
    size_t offset;
    size_t value;
    size_t ceiling;
} core_limits[] = {
    {"max_size", offsetof(json_limits, max_size), 1048576, (size_t)INT32_MAX},
    {"max_depth", offsetof(json_limits, max_depth), 32, JSON_DEPTH_CEILING},
    {"max_string", offsetof(json_limits, max_string), 262144, (size_t)INT32_MAX},
    {"max_key", offsetof(json_limits, max_key), CORE_MAX_KEY, (size_t)INT32_MAX},
    {"max_keys", offsetof(json_limits, max_keys), 1024, (size_t)INT32_MAX},
    {"max_items", offsetof(json_limits, max_items), 10000, (size_t)INT32_MAX},
    {"max_values", offsetof(json_limits, max_values), 100000, (size_t)INT32_MAX},
};
#define CORE_NLIMITS (sizeof core_limits / sizeof core_limits[0])

static size_t *core_limit_slot(json_limits *limits, size_t i)
{
    return (size_t *)(void *)((char *)limits + core_limits[i].offset);
}

enum core_mode { CORE_DECODE, CORE_PARSE, CORE_CONSTRUCT };

/* Slots of the entry points' stack: the input, the options, and what a JSON null becomes. */
enum { CORE_INPUT = 1, CORE_OPTIONS = 2, CORE_NULL = 3 };

static int core_option_is(const char *name, const char *wanted)
{
    return strcmp(name, wanted) == 0;
}

static const char *core_option_string(lua_State *L, const char *name, const char *const *choices)
{
    const char *value = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    int i;
    for (i = 0; value && choices[i]; i++)
        if (strcmp(value, choices[i]) == 0)
            return value;
    luaL_error(L, "option '%s' must be one of \"%s\", \"%s\"%s%s%s", name, choices[0], choices[1],
               choices[2] ? ", \"" : "", choices[2] ? choices[2] : "", choices[2] ? "\"" : "");
    return NULL;
}

static size_t core_option_size(lua_State *L, const struct core_limit *limit)
{
    lua_Number v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    if (!(v >= 1 && v <= (lua_Number)limit->ceiling && v == (lua_Number)(size_t)v))
        luaL_error(L, "option '%s' must be a whole number from 1 to %d", limit->name,
                   (int)limit->ceiling);
    return (size_t)v;
}

/* Reads the options table (if any) into p; an unknown name or a bad value raises. */
static void core_read_options(lua_State *L, json_parser *p, enum core_mode mode)
{
    static const char *const levels[] = {"lenient", "strict", NULL};
    static const char *const unknown_keys[] = {"keep", "drop", "reject", NULL};
    const char *name, *value;
    size_t i;

    if (lua_isnoneornil(L, CORE_OPTIONS))
        return;
    luaL_checktype(L, CORE_OPTIONS, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, CORE_OPTIONS)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "option names must be strings");
        name = lua_tostring(L, -2);
        for (i = 0; i < CORE_NLIMITS; i++)
            if (core_option_is(name, core_limits[i].name))
                break;
        if (i < CORE_NLIMITS) {
            *core_limit_slot(&p->limits, i) = core_option_size(L, &core_limits[i]);
        } else if (core_option_is(name, "null")) {
            /* read below, into its own slot */
        } else if (mode != CORE_DECODE && core_option_is(name, "level")) {
            p->strict = core_option_string(L, name, levels)[0] == 's';
        } else if (mode != CORE_DECODE && core_option_is(name, "unknown_keys")) {
            value = core_option_string(L, name, unknown_keys);
            p->unknown_keys = value[0] == 'k' ? JSON_KEEP : value[0] == 'd' ? JSON_DROP : JSON_REJECT;
        } else if (mode == CORE_CONSTRUCT &&
                   (core_option_is(name, "tolerance") || core_option_is(name, "now"))) {
            /* the signature's options, checked by verify */
        } else {
            luaL_error(L, "unknown option '%s'", name);
        }
        lua_pop(L, 1);
    }
}

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

/* Pushes nil, msg, info for the error p recorded. */
static int core_fail(lua_State *L, const json_parser *p)
{
    const json_error *e = &p->error;
    char offset[32];
    const char *path;
    size_t path_len = 0;
    luaL_Buffer b;

    snprintf(offset, sizeof offset, "%zu", e->offset);
    path = e->path_index ? lua_tolstring(L, e->path_index, &path_len) : NULL;
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
        lua_pushvalue(L, e->path_index);
        lua_setfield(L, -2, "path");
    }
    lua_pushinteger(L, (lua_Integer)e->offset);
    lua_setfield(L, -2, "offset");
    return 3;
}

/* A parser over len bytes at s, with the default limits. */
static void core_init_parser(json_parser *p, const char *s, size_t len)
{
    size_t i;
    memset(p, 0, sizeof *p);
    for (i = 0; i < CORE_NLIMITS; i++)
        *core_limit_slot(&p->limits, i) = core_limits[i].value;
    p->start = p->cur = (const unsigned char *)s;
    p->end = p->start + len;
}

/* decode(s [, opts]), parse(body [, opts]) and construct's parse: one walk, as the mode says. */
static int core_walk(lua_State *L, enum core_mode mode)
{
    size_t len;
    const char *input;
    json_parser p;

    luaL_checktype(L, CORE_INPUT, LUA_TSTRING);
    input = lua_tolstring(L, CORE_INPUT, &len);
    lua_settop(L, CORE_OPTIONS);
    core_init_parser(&p, input, len);
    core_read_options(L, &p, mode);

    if (lua_istable(L, CORE_OPTIONS))
        lua_getfield(L, CORE_OPTIONS, "null");
    else
        lua_pushnil(L);
    if (lua_isnil(L, CORE_NULL) && mode == CORE_DECODE) { /* plain JSON keeps nulls by default */
        lua_pushlightuserdata(L, NULL);
        lua_replace(L, CORE_NULL);
    }

    p.L = L;
    p.reject_duplicates = mode != CORE_DECODE;
    p.null_index = lua_isnil(L, CORE_NULL) ? 0 : CORE_NULL;
    p.cache_index = lua_upvalueindex(1);

    if (len > p.limits.max_size) {
        json_fail(&p, "limit", p.start + p.limits.max_size, 0, NULL, NULL,
                  "the input is %zu bytes, over max_size (%zu)", len, p.limits.max_size);
        return core_fail(L, &p);
    }
    if (walk_document(&p, mode == CORE_DECODE ? NULL : &schema_event))
        return core_fail(L, &p);
    return 1;
}

/* parse without Lua, for LuaJIT's FFI (lua/jicoo/webhook/luajit.lua): a delivery (body[len] is
 * NUL, as in every Lua string) walked with the default limits into slots (doubles), the Event at
 * slot 0 (layout in walk.c). Returns how many keys outside the schema it kept (0 or more), or -1
 * when the delivery is invalid or outside the fast path; the caller then calls parse, which
 * reports or builds it. */
static int core_tape(const char *body, size_t len, int strict, double *slots, int32_t capacity)
{
    json_parser p;
    json_tape tape;
    core_init_parser(&p, body, len);
    if (len > p.limits.max_size || capacity < 0)
        return -1;
    p.strict = strict;
    p.reject_duplicates = 1;
    p.unknown_keys = JSON_KEEP;
    memset(&tape, 0, sizeof tape);
    tape.slots = slots;
    tape.capacity = capacity;
    p.tape = &tape;
    return walk_document(&p, &schema_event) ? -1 : tape.other_keys;
}

/* construct without Lua, for LuaJIT's FFI: signature_check, then core_tape. Returns what
 * core_tape returns, or -1 when the signature does not verify; after a -1 core.construct says
 * what is wrong. */
static int core_tape_signed(void *hmac_template, const char *body, size_t len,
                            const char *header, size_t header_len, const char *secret,
                            size_t secret_len, double now, double tolerance, int strict,
                            double *slots, int32_t capacity)
{
    if (!signature_check(hmac_template, body, len, header, header_len, secret, secret_len, now,
                         tolerance))
        return -1;
    return core_tape(body, len, strict, slots, capacity);
}

static int core_decode(lua_State *L)
{
    return core_walk(L, CORE_DECODE);
}

static int core_parse(lua_State *L)
{
    return core_walk(L, CORE_PARSE);
}

/* construct(body, header, secrets [, opts]): verify, then parse only what verified, in one
 * call. Upvalues: the cache, the HMAC template. */
static int core_construct(lua_State *L)
{
    lua_settop(L, 4);
    if (signature_verify_at(L, lua_upvalueindex(2), 1) != 1) { /* false, msg, code */
        lua_pushnil(L);                                          /* nil, msg, {code = code} */
        lua_pushvalue(L, -3);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, -4);
        lua_setfield(L, -2, "code");
        return 3;
    }
    lua_settop(L, 4);
    lua_remove(L, 2); /* body, secrets, opts */
    lua_remove(L, 2); /* body, opts */
    return core_walk(L, CORE_CONSTRUCT);
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
    size_t i;
    int module, cache;

    lua_createtable(L, 0, 20);
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
    lua_pushlightuserdata(L, NULL); /* equal to cjson.null */
    lua_setfield(L, module, "null");
    schema_push_description(L);
    lua_setfield(L, module, "schema");
    lua_createtable(L, 0, (int)CORE_NLIMITS);
    for (i = 0; i < CORE_NLIMITS; i++) {
        lua_pushinteger(L, (lua_Integer)core_limits[i].value);
        lua_setfield(L, -2, core_limits[i].name);
    }
    lua_setfield(L, module, "limits");
    lua_pushlightuserdata(L, (void *)(uintptr_t)core_tape); /* for LuaJIT's FFI only */
    lua_setfield(L, module, "tape");
    lua_pushlightuserdata(L, (void *)(uintptr_t)core_tape_signed);
    lua_setfield(L, module, "tape_signed");

    lua_pushvalue(L, module);
    files_register(L);
    signature_register(L);       /* module, cache, module, template */
    lua_pushvalue(L, cache);
    lua_insert(L, -2);
    lua_pushcclosure(L, core_construct, 2);
    lua_setfield(L, module, "construct");
    lua_settop(L, module);
    return 1;
}
