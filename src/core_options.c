/* The options of jicoo.webhook.core's calls, every one defined once, in one list: the defaults,
 * the bounds and the misuse messages; the one reader the entry points use; core.options,
 * core.limits and core.check_options, for the Lua side. Apart from the entry points (core.c),
 * which only read the settings this file gives them. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core_options.h"

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

/* The calls' names, in the order of their bits (core_options.h). */
static const char *const core_calls[] = {"decode", "parse", "verify", "construct", NULL};

static const char *const core_levels[] = {"lenient", "strict", NULL};
static const char *const core_unknown_keys[] = {"keep", "drop", "reject", NULL};

typedef enum core_kind {
    CORE_LIMIT,  /* a whole number from 1 to its ceiling (max), kept as a size_t */
    CORE_CHOICE, /* one of its choices, kept as its index (an int); the first is the default */
    CORE_NUMBER, /* a number from min to max, kept as a double */
    CORE_ANY     /* any value; the call reads it from the table itself */
} core_kind;
static const char *const core_kinds[] = {"limit", "choice", "number", "any"};

/* Every option of every call, once: X(name, calls, kind, its field in core_settings, default,
 * min, max, choices, a number's misuse message "option '<name>' must be ..."). The table the
 * one reader uses (core_read_options), core.options, core.limits, core.check_options and the
 * defaults all come from this list (docs/api.md, "Limits"). The options verify takes come
 * first: the router passes them on every delivery. */
#define CORE_OPTIONS(X)                                                                          \
    X(tolerance, CORE_SIGNED, CORE_NUMBER, tolerance, 300, 0, HUGE_VAL, NULL,                    \
      "a number of seconds, 0 or more")                                                          \
    X(now, CORE_SIGNED, CORE_NUMBER, now, NAN, -DBL_MAX, DBL_MAX, NULL, "a time in Unix seconds") \
    X(level, CORE_SCHEMA, CORE_CHOICE, level, 0, 0, 0, core_levels, NULL)                        \
    X(unknown_keys, CORE_SCHEMA, CORE_CHOICE, unknown_keys, 0, 0, 0, core_unknown_keys, NULL)    \
    X(null, CORE_JSON, CORE_ANY, null, 0, 0, 0, NULL, NULL)                                      \
    X(max_size, CORE_JSON, CORE_LIMIT, limits.max_size, 1048576, 1, INT32_MAX, NULL, NULL)       \
    X(max_depth, CORE_JSON, CORE_LIMIT, limits.max_depth, 32, 1, JSON_DEPTH_CEILING, NULL, NULL) \
    X(max_string, CORE_JSON, CORE_LIMIT, limits.max_string, 262144, 1, INT32_MAX, NULL, NULL)    \
    X(max_key, CORE_JSON, CORE_LIMIT, limits.max_key, CORE_MAX_KEY, 1, INT32_MAX, NULL, NULL)    \
    X(max_keys, CORE_JSON, CORE_LIMIT, limits.max_keys, 1024, 1, INT32_MAX, NULL, NULL)          \
    X(max_items, CORE_JSON, CORE_LIMIT, limits.max_items, 10000, 1, INT32_MAX, NULL, NULL)       \
    X(max_values, CORE_JSON, CORE_LIMIT, limits.max_values, 100000, 1, INT32_MAX, NULL, NULL)

static const struct core_option {
    const char *name;
    unsigned calls;
    core_kind kind;
    size_t offset; /* where its value goes in core_settings */
    double value;  /* a limit's or a number's default */
    double min, max;
    const char *const *choices;
    const char *expected;
} core_options[] = {
#define CORE_OPTION(name, calls, kind, field, value, min, max, choices, expected)                \
    {#name, calls, kind, offsetof(core_settings, field), value, min, max, choices, expected},
    CORE_OPTIONS(CORE_OPTION)
#undef CORE_OPTION
};
#define CORE_NOPTIONS (sizeof core_options / sizeof core_options[0])

/* Every option at its default: a copy, not a loop over the table, on every call. */
static const core_settings core_defaults = {
#define CORE_DEFAULT(name, calls, kind, field, value, min, max, choices, expected) .field = value,
    CORE_OPTIONS(CORE_DEFAULT)
#undef CORE_DEFAULT
};

static void *core_option_slot(core_settings *s, const struct core_option *o)
{
    return (char *)s + o->offset;
}


void core_default_settings(core_settings *s)
{
    *s = core_defaults;
}

/* Raises the misuse error of a choice: "option 'level' must be one of "lenient", "strict"". */
static void core_bad_choice(lua_State *L, const struct core_option *o)
{
    char list[160];
    size_t used = 0, i;
    for (i = 0; o->choices[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "",
                                 o->choices[i]);
    luaL_error(L, "option '%s' must be one of %s", o->name, list);
}

/* Reads the value on top as option o into s; a bad value raises. */
static void core_read_option(lua_State *L, const struct core_option *o, core_settings *s)
{
    const char *text;
    lua_Number v;
    int i;
    switch (o->kind) {
    case CORE_LIMIT:
        v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
        if (!(v >= o->min && v <= o->max && v == (lua_Number)(size_t)v))
            luaL_error(L, "option '%s' must be a whole number from 1 to %d", o->name, (int)o->max);
        *(size_t *)core_option_slot(s, o) = (size_t)v;
        return;
    case CORE_CHOICE:
        text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        for (i = 0; text && o->choices[i]; i++)
            if (strcmp(text, o->choices[i]) == 0) {
                *(int *)core_option_slot(s, o) = i;
                return;
            }
        core_bad_choice(L, o);
        return;
    case CORE_NUMBER:
        v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : NAN;
        if (!(v >= o->min && v <= o->max))
            luaL_error(L, "option '%s' must be %s", o->name, o->expected);
        *(double *)core_option_slot(s, o) = (double)v;
        return;
    case CORE_ANY:
        return;
    }
}

/* Raises for an option name `call` does not take, naming the call and the names it takes. */
static void core_unknown_option(lua_State *L, const char *name, unsigned call)
{
    luaL_Buffer b;
    size_t i;
    int first = 1, c;
    for (c = 0; core_calls[c] && (1u << c) != call; c++)
        ;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "%s: unknown option '%s' (it takes ", core_calls[c] ? core_calls[c] : "?",
                    name);
    luaL_addvalue(&b);
    for (i = 0; i < CORE_NOPTIONS; i++) {
        if (core_options[i].calls & call) {
            if (!first)
                luaL_addstring(&b, ", ");
            luaL_addstring(&b, core_options[i].name);
            first = 0;
        }
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    lua_error(L);
}

void core_read_options(lua_State *L, int arg, unsigned call, core_settings *s)
{
    const char *name;
    size_t i;
    core_default_settings(s);
    if (lua_isnoneornil(L, arg))
        return;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg)) {
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "option names must be strings");
        name = lua_tostring(L, -2);
        for (i = 0; i < CORE_NOPTIONS; i++)
            if ((core_options[i].calls & call) && strcmp(name, core_options[i].name) == 0)
                break;
        if (i == CORE_NOPTIONS)
            core_unknown_option(L, name, call);
        core_read_option(L, &core_options[i], s);
        lua_pop(L, 1);
    }
}

int core_check_options(lua_State *L)
{
    core_settings s;
    unsigned call = 1u << luaL_checkoption(L, 1, NULL, core_calls);
    core_read_options(L, 2, call, &s);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.options: for each option {kind, calls = {<call> = true...}, and per kind default and
 * ceiling (limit), choices and default (choice), min, max and default (number; now has none: the
 * clock)}; and core.limits: each limit's default. */
void core_push_options(lua_State *L)
{
    size_t i, j;
    lua_createtable(L, 0, (int)CORE_NOPTIONS);          /* options */
    lua_newtable(L);                                    /* options, limits */
    for (i = 0; i < CORE_NOPTIONS; i++) {
        const struct core_option *o = &core_options[i];
        lua_createtable(L, 0, 5);                       /* options, limits, option */
        lua_pushstring(L, core_kinds[o->kind]);
        lua_setfield(L, -2, "kind");
        lua_createtable(L, 0, 4);
        for (j = 0; core_calls[j]; j++)
            if (o->calls & (1u << j)) {
                lua_pushboolean(L, 1);
                lua_setfield(L, -2, core_calls[j]);
            }
        lua_setfield(L, -2, "calls");
        if (o->kind == CORE_LIMIT) {
            lua_pushinteger(L, (lua_Integer)o->value);
            lua_pushvalue(L, -1);
            lua_setfield(L, -4, o->name);               /* limits[name] = default */
            lua_setfield(L, -2, "default");
            lua_pushinteger(L, (lua_Integer)o->max);
            lua_setfield(L, -2, "ceiling");
        } else if (o->kind == CORE_CHOICE) {
            lua_newtable(L);
            for (j = 0; o->choices[j]; j++) {
                lua_pushstring(L, o->choices[j]);
                lua_rawseti(L, -2, (int)j + 1);
            }
            lua_setfield(L, -2, "choices");
            lua_pushstring(L, o->choices[0]);
            lua_setfield(L, -2, "default");
        } else if (o->kind == CORE_NUMBER) {
            if (o->value == o->value) {
                lua_pushnumber(L, (lua_Number)o->value);
                lua_setfield(L, -2, "default");
            }
            lua_pushnumber(L, (lua_Number)o->min);
            lua_setfield(L, -2, "min");
            lua_pushnumber(L, (lua_Number)o->max);
            lua_setfield(L, -2, "max");
        }
        lua_setfield(L, -3, o->name);
    }
}
