/* The few Lua 5.2+ API pieces the C modules use, for Lua 5.1 and LuaJIT. */
#ifndef JICOO_COMPAT_H
#define JICOO_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i) lua_objlen((L), (i))
#endif

#if LUA_VERSION_NUM >= 503
#define COMPAT_HAS_INTEGERS 1
#else
#define COMPAT_HAS_INTEGERS 0
#endif

/* Pops the value on top into the user value of the userdata at (absolute) index i, so that the
 * userdata keeps it alive. 5.4's lua_newuserdata gives one user value; 5.1 (the environment)
 * and 5.2 hold only a table there, so the value goes into one. */
#if LUA_VERSION_NUM >= 504
#define compat_setuservalue(L, i) ((void)lua_setiuservalue((L), (i), 1))
#elif LUA_VERSION_NUM == 503
#define compat_setuservalue(L, i) lua_setuservalue((L), (i))
#else
static inline void compat_setuservalue(lua_State *L, int i)
{
    lua_createtable(L, 1, 0); /* value, holder */
    lua_insert(L, -2);        /* holder, value */
    lua_rawseti(L, -2, 1);    /* holder */
#if LUA_VERSION_NUM == 502
    lua_setuservalue(L, i);
#else
    lua_setfenv(L, i);
#endif
}
#endif

#endif
