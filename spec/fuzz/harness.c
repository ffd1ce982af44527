/* The fuzz targets' Lua state and their error policy: bad input must make the core return
 * nil, msg, info (or false, msg, code), never raise; so any error out of a check is a bug. */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "harness.h"
#include "tape.h"

int luaopen_jicoo_webhook_core(lua_State *L);

/* core.<entry>(...) through lua_pcall; a raise becomes an error the check cannot mistake for
 * an answer. Upvalue: none; arguments: the entry's name, then its arguments. */
static int harness_entry(lua_State *L)
{
    int nargs = lua_gettop(L) - 1, status;
    lua_getglobal(L, "core");
    lua_getfield(L, -1, luaL_checkstring(L, 1));
    lua_replace(L, 1);
    lua_pop(L, 1);
    status = lua_pcall(L, nargs, LUA_MULTRET, 0);
    if (status != LUA_OK)
        return luaL_error(L, "the entry raised (status %d): %s", status,
                          lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    return lua_gettop(L);
}

/* tape_accepts(body, strict, capacity): whether the core's tape (LuaJIT's parse, called there
 * through the FFI with the same declarations, tape.h) takes the body, walking it into exactly
 * `capacity` slots of the heap, so that the sanitizers see a write past them. */
static int harness_tape_accepts(lua_State *L)
{
    size_t len;
    const char *body = luaL_checklstring(L, 1, &len);
    int level = lua_toboolean(L, 2) ? 1 : 0, accepted;
    lua_Integer capacity = luaL_checkinteger(L, 3);
    double *slots = malloc((size_t)capacity * sizeof *slots);
    const jicoo_tape *tape;
    if (!slots)
        return luaL_error(L, "no memory for %d slots", (int)capacity);
    lua_getglobal(L, "core");
    lua_getfield(L, -1, "tape");
    lua_getfield(L, -1, "api");
    tape = (const jicoo_tape *)lua_touserdata(L, -1);
    accepted = tape->parse(body, len, level, slots, (int32_t)capacity) >= 0;
    free(slots);
    lua_pushboolean(L, accepted);
    return 1;
}

static void harness_die(lua_State *L, const char *what)
{
    fprintf(stderr, "\n*** jicoo fuzz: %s: %s\n", what,
            lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    fflush(stderr);
    abort();
}

lua_State *harness_state(void)
{
    static lua_State *L;
    const char *invariants;
    if (L)
        return L;
    L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "jicoo fuzz: no memory for a Lua state\n");
        abort();
    }
    luaL_openlibs(L);
    luaL_requiref(L, "jicoo.webhook.core", luaopen_jicoo_webhook_core, 0);
    lua_setglobal(L, "core");
    lua_pushcfunction(L, harness_entry);
    lua_setglobal(L, "call_entry");
    lua_pushcfunction(L, harness_tape_accepts);
    lua_setglobal(L, "tape_accepts");
    /* JICOO_FUZZ_INVARIANTS names another checks file, to try a change without a rebuild */
    invariants = getenv("JICOO_FUZZ_INVARIANTS");
    if (!invariants || !*invariants)
        invariants = HARNESS_INVARIANTS;
    if (luaL_loadfile(L, invariants) != LUA_OK)
        harness_die(L, "cannot load the invariants");
    if (lua_pcall(L, 0, 1, 0) != LUA_OK)
        harness_die(L, "cannot run the invariants");
    lua_setglobal(L, "checks");
    /* A collector that never rests: garbage made by one input is swept while the next is
       being built, so a value the core forgets to anchor is freed under its feet. */
    lua_gc(L, LUA_GCINC, 50, 200, 0);
    return L;
}

void harness_check(lua_State *L, const char *name, const uint8_t *data, size_t size)
{
    lua_settop(L, 0);
    lua_getglobal(L, "checks");
    lua_getfield(L, 1, name);
    if (size == 0) {
        lua_pushliteral(L, "");
        lua_pushinteger(L, 0);
    } else { /* byte 0 picks the variant (options), the rest is the input */
        lua_pushlstring(L, (const char *)data + 1, size - 1);
        lua_pushinteger(L, data[0]);
    }
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
        harness_die(L, name);
    lua_settop(L, 0);
}
