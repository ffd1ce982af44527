/* A connection of jicoo.webhook.sqlite3 (made by open, sqlite3_open.c): exec, prepare, changes,
 * last_insert_rowid, sync_wal, close; and the list of its live statements, which close finalizes. Apart
 * from the statements' methods (sqlite3_statement.c), which bind values and read rows. */
#include <limits.h>
#include <string.h>

#include "sqlite3_binding.h"

void sqlite_statement_release(sqlite_statement *st)
{
    if (!st->handle)
        return;
    sqlite3_finalize(st->handle); /* returns the last step's error, which was reported then */
    st->handle = NULL;
    if (st->prev)
        st->prev->next = st->next;
    else
        st->db->statements = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = st->next = NULL;
}

void sqlite_database_release(sqlite_database *db)
{
    while (db->statements)
        sqlite_statement_release(db->statements);
    if (db->handle) {
        /* With every statement finalized, close_v2 closes at once, as sqlite3_close would. */
        sqlite3_close_v2(db->handle);
        db->handle = NULL;
    }
}

static sqlite_database *sqlite_check_database(lua_State *L)
{
    sqlite_database *db = (sqlite_database *)luaL_checkudata(L, 1, BINDING_DATABASE);
    if (!db->handle)
        luaL_error(L, "sqlite3: the database is closed");
    return db;
}

/* SQL text at arg: one C string, so no NUL inside (SQLite would stop there). */
static const char *sqlite_check_sql(lua_State *L, int arg, size_t *len)
{
    const char *sql = luaL_checklstring(L, arg, len);
    luaL_argcheck(L, strlen(sql) == *len, arg, "SQL holds no NUL byte");
    luaL_argcheck(L, *len < INT_MAX, arg, "SQL too long");
    return sql;
}

/* db:exec(sql) -> true | nil, msg, code: one or more statements, their rows dropped. */
static int sqlite_exec(lua_State *L)
{
    sqlite_database *db = sqlite_check_database(L);
    size_t len;
    const char *sql = sqlite_check_sql(L, 2, &len);
    /* No error-message argument: SQLite would malloc a copy, which a Lua error while pushing
     * it would leak; sqlite3_errmsg holds the same text. */
    int rc = sqlite3_exec(db->handle, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        lua_pushstring(L, sqlite3_errmsg(db->handle));
        return sqlite_fail_code(L, rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Whether the text after a statement holds another one (blanks, ';' and comments do not). */
static int sqlite_has_more(sqlite3 *handle, const char *tail)
{
    sqlite3_stmt *next = NULL;
    int rc;
    while (*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r' || *tail == ';')
        tail++;
    if (*tail == '\0')
        return 0;
    rc = sqlite3_prepare_v2(handle, tail, -1, &next, NULL);
    sqlite3_finalize(next);
    return rc != SQLITE_OK || next != NULL;
}

/* db:prepare(sql) -> stmt | nil, msg, code: one statement. */
static int sqlite_prepare(lua_State *L)
{
    sqlite_database *db = sqlite_check_database(L);
    size_t len;
    const char *sql = sqlite_check_sql(L, 2, &len), *tail = NULL;
    sqlite_statement *st;
    int rc;

    lua_settop(L, 2);
    st = (sqlite_statement *)lua_newuserdata(L, sizeof *st);
    st->handle = NULL;
    st->db = db;
    st->prev = st->next = NULL;
    st->parameters = 0;
    luaL_getmetatable(L, BINDING_STATEMENT);
    lua_setmetatable(L, -2);                     /* db, sql, stmt */
    lua_pushvalue(L, 1);
    compat_setuservalue(L, 3);                   /* the statement keeps its database alive */
    /* The journal prepares its statements once and keeps them: PERSISTENT tells SQLite so. */
    rc = sqlite3_prepare_v3(db->handle, sql, (int)len + 1, SQLITE_PREPARE_PERSISTENT,
                            &st->handle, &tail);
    if (st->handle) {                            /* on the list at once: close finalizes it */
        st->next = db->statements;
        if (st->next)
            st->next->prev = st;
        db->statements = st;
    }
    if (rc != SQLITE_OK) {
        sqlite_statement_release(st);
        lua_pushstring(L, sqlite3_errmsg(db->handle));
        return sqlite_fail_code(L, rc);
    }
    if (!st->handle)
        return luaL_error(L, "sqlite3: prepare: the SQL holds no statement");
    if (sqlite_has_more(db->handle, tail)) {
        sqlite_statement_release(st);
        return luaL_error(L, "sqlite3: prepare takes one statement (exec runs several)");
    }
    st->parameters = sqlite3_bind_parameter_count(st->handle);
    return 1;
}

/* db:changes() -> rows changed by the last INSERT, UPDATE or DELETE that completed */
static int sqlite_changes(lua_State *L)
{
    sqlite_push_int64(L, sqlite3_changes64(sqlite_check_database(L)->handle));
    return 1;
}

static int sqlite_last_insert_rowid(lua_State *L)
{
    sqlite_push_int64(L, sqlite3_last_insert_rowid(sqlite_check_database(L)->handle));
    return 1;
}

/* db:close(), and the database's __gc: safe after either. */
static int sqlite_close(lua_State *L)
{
    sqlite_database_release((sqlite_database *)luaL_checkudata(L, 1, BINDING_DATABASE));
    return 0;
}

/* db:sync_wal() -> true | nil, msg, code: the WAL file synced to the disk (fdatasync, through
 * SQLite's own file object). With synchronous = NORMAL a commit writes the WAL without syncing
 * it; a caller that must not answer before its commit is on disk calls this after the commit,
 * outside the write lock, so that the sync of one connection does not hold the others. */
static int sqlite_sync_wal(lua_State *L)
{
    sqlite_database *db = sqlite_check_database(L);
    sqlite3_file *wal = NULL;
    int rc = sqlite3_file_control(db->handle, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);
    if (rc == SQLITE_OK && wal && wal->pMethods)
        rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) {
        lua_pushfstring(L, "cannot sync the journal's WAL: %s", sqlite3_errstr(rc));
        return sqlite_fail_code(L, rc);
    }
    lua_pushboolean(L, 1);
    return 1;
}

void sqlite_database_register(lua_State *L)
{
    static const luaL_Reg database[] = {
        {"exec", sqlite_exec},       {"prepare", sqlite_prepare},
        {"changes", sqlite_changes}, {"last_insert_rowid", sqlite_last_insert_rowid},
        {"sync_wal", sqlite_sync_wal}, {"close", sqlite_close}, {NULL, NULL}};

    lua_pushnil(L);
    sqlite_new_type(L, BINDING_DATABASE, database, sqlite_close);
}
