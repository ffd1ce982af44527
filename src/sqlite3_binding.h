/* What the files of jicoo.webhook.sqlite3 share (sqlite3_binding.c, the module entry): the two
 * userdata types, the results every call returns, and what each file hands the entry. */
#ifndef JICOO_SQLITE3_BINDING_H
#define JICOO_SQLITE3_BINDING_H

#include <sqlite3.h>

#include "compat.h"

#if SQLITE_VERSION_NUMBER < 3037000
#error "jicoo.webhook.sqlite3 needs SQLite 3.37 or later (SQLITE_OPEN_EXRESCODE, sqlite3_changes64)"
#endif

#define BINDING_DATABASE "jicoo.webhook.SQLiteDatabase"
#define BINDING_STATEMENT "jicoo.webhook.SQLiteStatement"

typedef struct sqlite_statement sqlite_statement;

typedef struct sqlite_database {
    sqlite3 *handle;               /* NULL once closed */
    sqlite_statement *statements;  /* the live statements prepared on it */
    int busy_timeout;              /* ms the busy handler waits for another's lock, in all */
} sqlite_database;

struct sqlite_statement {
    sqlite3_stmt *handle;          /* NULL once finalized (by finalize, close or the GC) */
    sqlite_database *db;           /* alive as long as the statement: its user value */
    sqlite_statement *prev, *next; /* in db->statements while handle is set */
    int parameters;
};

/* The message on top becomes the results nil, message, word. */
int sqlite_fail(lua_State *L, const char *word);

/* The message on top becomes nil, message, code for SQLite's result code rc; out of memory
 * raises, and so does what SQLite calls misuse (a bug here, not the world's doing). */
int sqlite_fail_code(lua_State *L, int rc);

/* An SQLite integer: a Lua integer where there are integers (5.3+), else a number (exact up
 * to 2^53). */
void sqlite_push_int64(lua_State *L, sqlite3_int64 v);

/* Registers the metatable `name`: __index holds the methods, each a closure over the value on
 * top (popped), then __gc and __name. */
void sqlite_new_type(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc);

/* The module's open (sqlite3_open.c). */
int sqlite_open(lua_State *L);

/* A connection's end and a statement's (sqlite3_database.c): each safe to call again. */
void sqlite_database_release(sqlite_database *db);
void sqlite_statement_release(sqlite_statement *st);

/* The metatables of a connection (sqlite3_database.c) and of a statement (sqlite3_statement.c). */
void sqlite_database_register(lua_State *L);
void sqlite_statement_register(lua_State *L);

#endif
