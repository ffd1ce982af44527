/* The few Lua 5.2+ API pieces this core uses, for Lua 5.1 and LuaJIT. */
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

#endif
