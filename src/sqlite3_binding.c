/* The module jicoo.webhook.sqlite3: a binding of SQLite's prepared statements, for the
 * journal's database (from nginx's thread pool, plain Lua and the command line). A connection
 * and its statements are userdata owned by the GC; a statement keeps its connection alive
 * through its user value, and the connection keeps a list of its live statements, so that
 * db:close() finalizes them and a statement never outlives its handle.
 *
 * The files hold guests' data on a shared machine: before SQLite sees a name, open() checks
 * with lstat that the file (and its -wal, -shm and -journal) is a regular file of this process
 * with one link, and creates a missing one itself with exactly the mode asked for.
 *
 * Misuse raises; failures of the outside world return nil, message, code, with code one of
 * busy, full, readonly, io, corrupt, constraint, cantopen, perm, unsafe, error; out of memory
 * raises through Lua. No process-global mutable state: each Lua state (one per thread) loads
 * its own, and a connection is used by one thread at a time. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "compat.h"

#if SQLITE_VERSION_NUMBER < 3037000
#error "jicoo.webhook.sqlite3 needs SQLite 3.37 or later (SQLITE_OPEN_EXRESCODE, sqlite3_changes64)"
#endif

#if defined(__GNUC__)
#define BINDING_EXPORT __attribute__((visibility("default")))
#else
#define BINDING_EXPORT
#endif

#define BINDING_DATABASE "jicoo.webhook.SQLiteDatabase"
#define BINDING_STATEMENT "jicoo.webhook.SQLiteStatement"

typedef struct sqlite_statement sqlite_statement;

typedef struct sqlite_database {
    sqlite3 *handle;               /* NULL once closed */
    sqlite_statement *statements;  /* the live statements prepared on it */
} sqlite_database;

struct sqlite_statement {
    sqlite3_stmt *handle;          /* NULL once finalized (by finalize, close or the GC) */
    sqlite_database *db;           /* alive as long as the statement: its user value */
    sqlite_statement *prev, *next; /* in db->statements while handle is set */
    int parameters;
};

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

/* The message on top becomes the results nil, message, word. */
static int sqlite_fail(lua_State *L, const char *word)
{
    lua_pushnil(L);
    lua_insert(L, -2);      /* nil, message */
    lua_pushstring(L, word);
    return 3;
}

/* The message on top becomes nil, message, code for SQLite's result code rc; out of memory
 * raises, and so does what SQLite calls misuse (a bug here, not the world's doing). */
static int sqlite_fail_code(lua_State *L, int rc)
{
    if ((rc & 0xff) == SQLITE_NOMEM || rc == SQLITE_IOERR_NOMEM)
        return luaL_error(L, "sqlite3: not enough memory");
    if ((rc & 0xff) == SQLITE_MISUSE || (rc & 0xff) == SQLITE_RANGE)
        return luaL_error(L, "sqlite3: misuse: %s", lua_tostring(L, -1));
    return sqlite_fail(L, sqlite_code_word(rc));
}

/* The word for a failed system call of open()'s own. */
static const char *sqlite_errno_word(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return "perm";
    case ENOSPC:
    case EDQUOT:
        return "full";
    case EROFS:
        return "readonly";
    case EIO:
        return "io";
    case ELOOP: /* O_NOFOLLOW met a link made after lstat looked */
        return "unsafe";
    default:
        return "cantopen";
    }
}

static int sqlite_fail_errno(lua_State *L, const char *path, const char *what, int err)
{
    lua_pushfstring(L, "%s: %s%s", path, what, strerror(err));
    return sqlite_fail(L, sqlite_errno_word(err));
}

/* An SQLite integer: a Lua integer where there are integers (5.3+), else a number (exact up
 * to 2^53). */
static void sqlite_push_int64(lua_State *L, sqlite3_int64 v)
{
#if COMPAT_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)v);
#else
    lua_pushnumber(L, (lua_Number)v);
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* open's options: name, kind, where it goes, default, bounds; unknown names are refused */

typedef struct sqlite_settings {
    int create;
    int readonly;
    int mode;
    int busy_timeout; /* milliseconds */
} sqlite_settings;

enum { OPTION_BOOLEAN, OPTION_WHOLE };

static const struct sqlite_option {
    const char *name;
    int kind;
    size_t offset; /* of its int in sqlite_settings */
    int value;     /* the default */
    int min, max;  /* a whole number's bounds */
    const char *expected;
} sqlite_options[] = {
    {"busy_timeout", OPTION_WHOLE, offsetof(sqlite_settings, busy_timeout), 2000, 0, INT_MAX,
     "a whole number of milliseconds, 0 or more"},
    {"create", OPTION_BOOLEAN, offsetof(sqlite_settings, create), 0, 0, 1, "a boolean"},
    {"mode", OPTION_WHOLE, offsetof(sqlite_settings, mode), 0600, 0, 0777,
     "a whole number from 0 to 511 (permission bits, 0777)"},
    {"readonly", OPTION_BOOLEAN, offsetof(sqlite_settings, readonly), 0, 0, 1, "a boolean"},
};
#define SQLITE_NOPTIONS (sizeof sqlite_options / sizeof sqlite_options[0])

static int *sqlite_option_slot(sqlite_settings *s, const struct sqlite_option *o)
{
    return (int *)(void *)((char *)s + o->offset);
}

/* Raises for an option name open does not take, naming the ones it takes. */
static void sqlite_unknown_option(lua_State *L, const char *name)
{
    luaL_Buffer b;
    size_t i;
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "sqlite3.open: unknown option '%s' (it takes ", name);
    luaL_addvalue(&b);
    for (i = 0; i < SQLITE_NOPTIONS; i++) {
        if (i)
            luaL_addstring(&b, ", ");
        luaL_addstring(&b, sqlite_options[i].name);
    }
    luaL_addchar(&b, ')');
    luaL_pushresult(&b);
    lua_error(L);
}

/* The options table at arg (nil or absent: none) into s over the defaults; a bad one raises. */
static void sqlite_read_options(lua_State *L, int arg, sqlite_settings *s)
{
    size_t i;
    for (i = 0; i < SQLITE_NOPTIONS; i++)
        *sqlite_option_slot(s, &sqlite_options[i]) = sqlite_options[i].value;
    if (lua_isnoneornil(L, arg))
        return;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg)) {                /* ..., name, value */
        const struct sqlite_option *o = NULL;
        lua_Number v;
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "sqlite3.open: option names must be strings");
        for (i = 0; i < SQLITE_NOPTIONS && !o; i++)
            if (strcmp(lua_tostring(L, -2), sqlite_options[i].name) == 0)
                o = &sqlite_options[i];
        if (!o)
            sqlite_unknown_option(L, lua_tostring(L, -2));
        if (o->kind == OPTION_BOOLEAN) {
            if (!lua_isboolean(L, -1))
                luaL_error(L, "sqlite3.open: option '%s' must be %s", o->name, o->expected);
            *sqlite_option_slot(s, o) = lua_toboolean(L, -1);
        } else {
            v = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
            if (!(v >= o->min && v <= o->max && v == (lua_Number)(int)v))
                luaL_error(L, "sqlite3.open: option '%s' must be %s", o->name, o->expected);
            *sqlite_option_slot(s, o) = (int)v;
        }
        lua_pop(L, 1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* open's file checks */

/* Why the file lstat described may not be opened, written into why; 0 when it may. */
static int sqlite_unsafe(const struct stat *st, char *why, size_t size)
{
    const char *kind = NULL;
    if (S_ISLNK(st->st_mode))
        kind = "a symbolic link";
    else if (S_ISDIR(st->st_mode))
        kind = "a directory";
    else if (S_ISFIFO(st->st_mode))
        kind = "a FIFO";
    else if (S_ISCHR(st->st_mode))
        kind = "a character device";
    else if (S_ISBLK(st->st_mode))
        kind = "a block device";
    else if (S_ISSOCK(st->st_mode))
        kind = "a socket";
    else if (!S_ISREG(st->st_mode))
        kind = "a file of an unknown type";
    if (kind)
        snprintf(why, size, "%s, not a regular file", kind);
    else if (st->st_uid != geteuid())
        snprintf(why, size, "owned by uid %lu, not by this process (uid %lu)",
                 (unsigned long)st->st_uid, (unsigned long)geteuid());
    else if (st->st_nlink != 1)
        snprintf(why, size, "has %lu hard links", (unsigned long)st->st_nlink);
    else
        return 0;
    return 1;
}

/* lstat's verdict on name, reported as path: 0 and st filled when it is safe; ENOENT when it is
 * not there (nothing pushed); else 1 with nil, message, code pushed. */
static int sqlite_check_file(lua_State *L, const char *name, const char *path, struct stat *st)
{
    char why[96];
    if (lstat(name, st) != 0) {
        if (errno == ENOENT)
            return ENOENT;
        sqlite_fail_errno(L, path, "", errno);
        return 1;
    }
    if (sqlite_unsafe(st, why, sizeof why)) {
        lua_pushfstring(L, "%s: %s", path, why);
        sqlite_fail(L, "unsafe");
        return 1;
    }
    return 0;
}

/* Makes sure the database file name (path in messages) is there and safe, creating it when
 * s->create says so (and setting *created), and that its -wal, -shm and -journal are safe where
 * they exist: 0 with st describing the file, or the count of results pushed (nil, message,
 * code). */
static int sqlite_prepare_files(lua_State *L, const char *name, const char *path,
                                const sqlite_settings *s, struct stat *st, int *created)
{
    static const char *const sidecars[] = {"-wal", "-shm", "-journal"};
    struct stat other;
    int attempt, found, fd, err;
    size_t i;

    /* Another process may create or remove the name between lstat and open: look again, a few
     * times, rather than trust either. */
    for (attempt = 0;; attempt++) {
        found = sqlite_check_file(L, name, path, st);
        if (found != ENOENT)
            break;
        if (!s->create) {
            lua_pushfstring(L, "%s: no such file (option 'create' is not set)", path);
            return sqlite_fail(L, "cantopen");
        }
        if (attempt == 3) {
            lua_pushfstring(L, "%s: kept changing while it was being created", path);
            return sqlite_fail(L, "cantopen");
        }
        fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)s->mode);
        if (fd < 0) {
            if (errno == EEXIST)
                continue;
            return sqlite_fail_errno(L, path, "cannot create: ", errno);
        }
        /* open() applied the umask (nginx runs with 0, a shell mostly with 022): the bits
         * must be exactly mode, whatever it was. */
        if (fchmod(fd, (mode_t)s->mode) != 0) {
            err = errno;
            close(fd);
            unlink(name);
            return sqlite_fail_errno(L, path, "cannot set the mode: ", err);
        }
        close(fd);
        *created = 1;
    }
    if (found)
        return 3;
    for (i = 0; i < sizeof sidecars / sizeof sidecars[0]; i++) {
        const char *sidecar_name, *sidecar_path;
        lua_pushfstring(L, "%s%s", name, sidecars[i]);
        lua_pushfstring(L, "%s%s", path, sidecars[i]);  /* ..., sidecar name, sidecar path */
        sidecar_name = lua_tostring(L, -2);
        sidecar_path = lua_tostring(L, -1);
        found = sqlite_check_file(L, sidecar_name, sidecar_path, &other);
        if (found == 1)
            return 3;
        lua_pop(L, 2);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections */

static void sqlite_statement_release(sqlite_statement *st)
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

static void sqlite_database_release(sqlite_database *db)
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

/* open(path [, opts]) -> db | nil, msg, code */
static int sqlite_open(lua_State *L)
{
    size_t len;
    const char *path = luaL_checklstring(L, 1, &len), *name;
    sqlite_settings s;
    sqlite_database *db;
    struct stat before, after;
    int rc, flags, pushed, created = 0;

    luaL_argcheck(L, len > 0 && strlen(path) == len, 1, "a file name, without NUL bytes");
    sqlite_read_options(L, 2, &s);
    if (s.create && s.readonly)
        luaL_error(L, "sqlite3.open: options 'create' and 'readonly' exclude each other");
    lua_settop(L, 2);
    /* SQLite reads ":memory:", and "file:..." in a build with SQLITE_USE_URI (Debian's), as
     * something else than a file's name; "./" makes either the file it spells. */
    if (strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        lua_pushfstring(L, "./%s", path);
    else
        lua_pushvalue(L, 1);
    name = lua_tostring(L, 3);                   /* path, opts, name */

    db = (sqlite_database *)lua_newuserdata(L, sizeof *db);
    db->handle = NULL;
    db->statements = NULL;
    luaL_getmetatable(L, BINDING_DATABASE);
    lua_setmetatable(L, -2);                     /* path, opts, name, db */

    if ((pushed = sqlite_prepare_files(L, name, path, &s, &before, &created)) != 0)
        return pushed;
    flags = (s.readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOFOLLOW |
            SQLITE_OPEN_EXRESCODE;
    rc = sqlite3_open_v2(name, &db->handle, flags, NULL); /* the GC closes it from here on */
    if (rc != SQLITE_OK) {
        if (!db->handle)
            return luaL_error(L, "sqlite3: not enough memory");
        if (rc == SQLITE_CANTOPEN_SYMLINK) /* a folder on the way: lstat saw the last name only */
            lua_pushfstring(L, "%s: a symbolic link on the way, which SQLite does not follow", path);
        else
            lua_pushfstring(L, "%s: %s", path, sqlite3_errmsg(db->handle));
        sqlite_database_release(db);
        if (created) /* the empty file made above: a failed open leaves nothing behind */
            unlink(name);
        return sqlite_fail_code(L, rc);
    }
    /* Narrows the window between the checks and SQLite's open(): the name must still be the
     * file that was checked. */
    if (lstat(name, &after) != 0 || after.st_dev != before.st_dev ||
        after.st_ino != before.st_ino) {
        sqlite_database_release(db);
        lua_pushfstring(L, "%s: replaced while it was being opened", path);
        return sqlite_fail(L, "unsafe");
    }
    sqlite3_busy_timeout(db->handle, s.busy_timeout);
    return 1;
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

/* ------------------------------------------------------------------------------------------ */
/* Statements */

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

/* ------------------------------------------------------------------------------------------ */

/* Registers the metatable `name`: __index holds the methods, each a closure over the value on
 * top (popped), then __gc and __name. */
static void sqlite_new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                            lua_CFunction gc)
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
    static const luaL_Reg database[] = {
        {"exec", sqlite_exec},       {"prepare", sqlite_prepare},
        {"changes", sqlite_changes}, {"last_insert_rowid", sqlite_last_insert_rowid},
        {"close", sqlite_close},     {NULL, NULL}};
    static const luaL_Reg statement[] = {
        {"run", sqlite_run},           {"query", sqlite_query}, {"first", sqlite_first},
        {"finalize", sqlite_finalize}, {NULL, NULL}};

    lua_pushnil(L);
    sqlite_new_type(L, BINDING_DATABASE, database, sqlite_close);
    lua_pushcfunction(L, sqlite_collect);
    sqlite_new_type(L, BINDING_STATEMENT, statement, sqlite_finalize);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, sqlite_open);
    lua_setfield(L, -2, "open");
    lua_pushstring(L, sqlite3_libversion());
    lua_setfield(L, -2, "version");
    return 1;
}
