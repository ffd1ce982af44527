/* A prepared statement of jicoo.webhook.sqlite3 (made by db:prepare, sqlite3_database.c): its
 * values bound, its steps, its rows (run, query, first), finalize. Apart from the connection:
 * this is where Lua values become SQLite's and SQLite's become Lua's. */
#include "sqlite3_binding.h"

static sqlite_statement *sqlite_check_statement(lua_State *L)
{
    sqlite_statement *st = (sqlite_statement *)luaL_checkudata(L, 1, BINDING_STATEMENT);
    if (!st->db->handle)
        luaL_error(L, "sqlite3: the statement's database is closed");
    if (!st->handle)
        luaL_error(L, "sqlite3: the statement is finalized");
    return st;
}

static int sqlite_bind_one(lua_State *L, sqlite3_stmt *h, int parameter, int arg)
{
    size_t len;
    const char *s;
    switch (lua_type(L, arg)) {
    case LUA_TNIL:
        return sqlite3_bind_null(h, parameter);
    case LUA_TBOOLEAN:
        return sqlite3_bind_int(h, parameter, lua_toboolean(L, arg));
    case LUA_TNUMBER:
#if COMPAT_HAS_INTEGERS
        /* 5.3+ tells integers from floats, and a float stays REAL, so it comes back a float. */
        if (lua_isinteger(L, arg))
            return sqlite3_bind_int64(h, parameter, (sqlite3_int64)lua_tointeger(L, arg));
        return sqlite3_bind_double(h, parameter, (double)lua_tonumber(L, arg));
#else
        {
            /* A whole number in int64's range is an INTEGER (-2^63 <= n < 2^63, both exact,
             * so the cast is defined). */
            lua_Number n = lua_tonumber(L, arg);
            if (n >= -9223372036854775808.0 && n < 9223372036854775808.0 &&
                (lua_Number)(sqlite3_int64)n == n)
                return sqlite3_bind_int64(h, parameter, (sqlite3_int64)n);
            return sqlite3_bind_double(h, parameter, (double)n);
        }
#endif
    default: /* a string: sqlite_bind let nothing else through */
        s = lua_tolstring(L, arg, &len);
        return sqlite3_bind_text64(h, parameter, s, (sqlite3_uint64)len, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    }
}

/* Binds the arguments after the statement as ?1..?n: nil, booleans, numbers, strings. A wrong
 * count or type raises before anything is bound; SQLite's refusal (a string too big) returns
 * its code with the bindings cleared. */
static int sqlite_bind(lua_State *L, sqlite_statement *st)
{
    int n = lua_gettop(L) - 1, i, rc = SQLITE_OK;
    if (n != st->parameters)
        luaL_error(L, "sqlite3: the statement takes %d argument%s, got %d", st->parameters,
                   st->parameters == 1 ? "" : "s", n);
    for (i = 2; i <= n + 1; i++) {
        int t = lua_type(L, i);
        if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
            luaL_argerror(L, i, lua_pushfstring(L, "nil, boolean, number or string expected, got %s",
                                                luaL_typename(L, i)));
    }
    for (i = 1; i <= n && rc == SQLITE_OK; i++)
        rc = sqlite_bind_one(L, st->handle, i, i + 1);
    if (rc != SQLITE_OK)
        sqlite3_clear_bindings(st->handle);
    return rc;
}

/* After every run, query and first, error or not: the statement reset (no read lock kept,
 * ready to run again) and its bindings dropped (no copy of a big string kept). */
static void sqlite_reset(sqlite_statement *st)
{
    sqlite3_reset(st->handle);
    sqlite3_clear_bindings(st->handle);
}

/* The error of the statement's last step, which sqlite3_reset hands to the connection. */
static int sqlite_fail_step(lua_State *L, sqlite_statement *st, int rc)
{
    lua_pushstring(L, sqlite3_errmsg(st->db->handle));
    return sqlite_fail_code(L, rc);
}

/* stmt:run(...) -> changes | nil, msg, code: steps to the end, rows dropped. */
static int sqlite_run(lua_State *L)
{
    sqlite_statement *st = sqlite_check_statement(L);
    sqlite3 *handle = st->db->handle;
    sqlite3_int64 before;
    int rc = sqlite_bind(L, st);
    if (rc != SQLITE_OK) {
        lua_pushstring(L, sqlite3_errstr(rc));
        return sqlite_fail_code(L, rc);
    }
    before = sqlite3_total_changes64(handle);
    while ((rc = sqlite3_step(st->handle)) == SQLITE_ROW)
        ;
    sqlite_reset(st);
    if (rc != SQLITE_DONE)
        return sqlite_fail_step(L, st, rc);
    /* sqlite3_changes64 keeps the count of the last INSERT, UPDATE or DELETE: a statement of
     * another kind changed nothing, which the total (unmoved) tells. */
    sqlite_push_int64(L, sqlite3_total_changes64(handle) != before ? sqlite3_changes64(handle) : 0);
    return 1;
}

/* What query and first hand to sqlite_collect, and what it reports back. */
typedef struct sqlite_collection {
    sqlite_statement *st;
    int all;  /* every row (query), or the first (first) */
    int rc;   /* the last step's result */
} sqlite_collection;

/* The row the statement is on, as a table keyed by column name (NULL columns absent); the
 * column names are at stack slots names .. names + columns - 1. */
static void sqlite_push_row(lua_State *L, sqlite3_stmt *h, int columns, int names)
{
    const void *bytes;
    int i;
    lua_createtable(L, 0, columns);
    for (i = 0; i < columns; i++) {
        int type = sqlite3_column_type(h, i);
        if (type == SQLITE_NULL)
            continue;
        lua_pushvalue(L, names + i);            /* row, name */
        switch (type) {
        case SQLITE_INTEGER:
            sqlite_push_int64(L, sqlite3_column_int64(h, i));
            break;
        case SQLITE_FLOAT:
            lua_pushnumber(L, (lua_Number)sqlite3_column_double(h, i));
            break;
        default: /* TEXT or BLOB: the bytes, then their count (the documented order) */
            bytes = type == SQLITE_TEXT ? (const void *)sqlite3_column_text(h, i)
                                        : sqlite3_column_blob(h, i);
            if (!bytes && sqlite3_errcode(sqlite3_db_handle(h)) == SQLITE_NOMEM)
                luaL_error(L, "sqlite3: not enough memory");
            lua_pushlstring(L, bytes ? (const char *)bytes : "", (size_t)sqlite3_column_bytes(h, i));
            break;
        }
        lua_rawset(L, -3);                      /* row */
    }
}

/* Under lua_pcall, so that a Lua error (out of memory) still lets the caller reset the
 * statement: steps it, pushing { row, ... } (all) or the first row or false. */
static int sqlite_collect(lua_State *L)
{
    sqlite_collection *c = (sqlite_collection *)lua_touserdata(L, 1);
    sqlite3_stmt *h = c->st->handle;
    int rows = 0, columns = 0, names = 0, i;
    if (c->all)
        lua_newtable(L);                        /* c, rows */
    while ((c->rc = sqlite3_step(h)) == SQLITE_ROW) {
        if (!names) {
            /* Read at the first row: a schema change re-prepares the statement in its first
             * step, which can change its columns. */
            columns = sqlite3_column_count(h);
            luaL_checkstack(L, columns + 3, "too many columns");
            names = lua_gettop(L) + 1;
            for (i = 0; i < columns; i++) {
                const char *name = sqlite3_column_name(h, i);
                if (!name)
                    return luaL_error(L, "sqlite3: not enough memory");
                lua_pushstring(L, name);        /* c, [rows,] names... */
            }
        }
        sqlite_push_row(L, h, columns, names);  /* c, [rows,] names..., row */
        if (!c->all)
            return 1;
        lua_rawseti(L, 2, ++rows);
    }
    if (c->all)
        lua_settop(L, 2);
    else
        lua_pushboolean(L, 0);
    return 1;
}

/* query and first. Upvalue 1: sqlite_collect. */
static int sqlite_rows(lua_State *L, int all)
{
    sqlite_statement *st = sqlite_check_statement(L);
    sqlite_collection c;
    int status, rc = sqlite_bind(L, st);
    if (rc != SQLITE_OK) {
        lua_pushstring(L, sqlite3_errstr(rc));
        return sqlite_fail_code(L, rc);
    }
    c.st = st;
    c.all = all;
    c.rc = SQLITE_OK;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushlightuserdata(L, &c);
    status = lua_pcall(L, 1, 1, 0);             /* stmt, args..., result or error */
    sqlite_reset(st);
    if (status != 0)
        return lua_error(L);
    if (c.rc != SQLITE_ROW && c.rc != SQLITE_DONE)
        return sqlite_fail_step(L, st, c.rc);
    return 1;
}

/* stmt:query(...) -> { row, ... } | nil, msg, code */
static int sqlite_query(lua_State *L)
{
    return sqlite_rows(L, 1);
}

/* stmt:first(...) -> row | false | nil, msg, code */
static int sqlite_first(lua_State *L)
{
    return sqlite_rows(L, 0);
}

/* stmt:finalize(), and the statement's __gc: safe after either, and after db:close(). */
static int sqlite_finalize(lua_State *L)
{
    sqlite_statement_release((sqlite_statement *)luaL_checkudata(L, 1, BINDING_STATEMENT));
    return 0;
}

void sqlite_statement_register(lua_State *L)
{
    static const luaL_Reg statement[] = {
        {"run", sqlite_run},           {"query", sqlite_query}, {"first", sqlite_first},
        {"finalize", sqlite_finalize}, {NULL, NULL}};

    lua_pushcfunction(L, sqlite_collect);
    sqlite_new_type(L, BINDING_STATEMENT, statement, sqlite_finalize);
}
