/* The module jicoo.webhook.sqlite3: a binding of SQLite's prepared statements, for the
 * journal's database (from nginx's thread pool, plain Lua and the command line). A connection
 * and its statements are userdata owned by the GC; a statement keeps its connection alive
 * through its user value, and the connection keeps a list of its live statements, so that
 * db:close() finalizes them and a statement never outlives its handle.
 *
 * This file is the module's entry and the results every call shares. The rest is one file per
 * concern: open and its checks of the files (sqlite3_open.c), a connection's methods
 * (sqlite3_database.c), a statement's: its values bound, its steps, its rows
 * (sqlite3_statement.c).
 *
 * Misuse raises; failures of the outside world return nil, message, code, with code one of
 * busy, full, readonly, io, corrupt, constraint, cantopen, perm, unsafe, error; out of memory
 * raises through Lua. No process-global mutable state: each Lua state (one per thread) loads
 * its own, and a connection is used by one thread at a time. */
#include "sqlite3_binding.h"

#if defined(__GNUC__)
#define BINDING_EXPORT __attribute__((visibility("default")))
#else
#define BINDING_EXPORT
#endif

/* ------------------------------------------------------------------------------------------ */
/* Results */

/* The word a program tests for an SQLite result code, primary or extended. */
static const char *sqlite_code_word(int rc)
{
    if (rc == SQLITE_CANTOPEN_SYMLINK)
        return "unsafe";
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return "busy";
    case SQLITE_FULL:
        return "full";
    case SQLITE_READONLY:
        return "readonly";
    case SQLITE_IOERR:
        return "io";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return "corrupt";
    case SQLITE_CONSTRAINT:
        return "constraint";
    case SQLITE_CANTOPEN:
        return "cantopen";
    case SQLITE_PERM:
        return "perm";
    default:
        return "error";
    }
}

int sqlite_fail(lua_State *L, const char *word)
{
    lua_pushnil(L);
    lua_insert(L, -2);      /* nil, message */
    lua_pushstring(L, word);
    return 3;
}

int sqlite_fail_code(lua_State *L, int rc)
{
    if ((rc & 0xff) == SQLITE_NOMEM || rc == SQLITE_IOERR_NOMEM)
        return luaL_error(L, "sqlite3: not enough memory");
    if ((rc & 0xff) == SQLITE_MISUSE || (rc & 0xff) == SQLITE_RANGE)
        return luaL_error(L, "sqlite3: misuse: %s", lua_tostring(L, -1));
    return sqlite_fail(L, sqlite_code_word(rc));
}

void sqlite_push_int64(lua_State *L, sqlite3_int64 v)
{
#if COMPAT_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* The module entry */

void sqlite_new_type(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc)
{
    const luaL_Reg *m;
    luaL_newmetatable(L, name);                 /* upvalue, mt */
    lua_createtable(L, 0, 6);                   /* upvalue, mt, methods */
    for (m = methods; m->name; m++) {
        lua_pushvalue(L, -3);
        lua_pushcclosure(L, m->func, 1);
        lua_setfield(L, -2, m->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");              /* Lua 5.1 and LuaJIT do not set it */
    lua_pop(L, 2);
}

BINDING_EXPORT int luaopen_jicoo_webhook_sqlite3(lua_State *L);

int luaopen_jicoo_webhook_sqlite3(lua_State *L)
{
    sqlite_database_register(L);
    sqlite_statement_register(L);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, sqlite_open);
    lua_setfield(L, -2, "open");
    lua_pushstring(L, sqlite3_libversion());
    lua_setfield(L, -2, "version");
    return 1;
}
