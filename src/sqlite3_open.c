/* open(path [, opts]) of jicoo.webhook.sqlite3: its options, and its checks of the files.
 *
 * The files hold guests' data on a shared machine: before SQLite sees a name, open() checks
 * with lstat that the file (and its -wal, -shm and -journal) is a regular file of this process
 * with one link, and creates a missing one itself with exactly the mode asked for.
 *
 * Apart from the connection's other methods (sqlite3_database.c): this is the file that meets
 * the file system, where another process may change a name between two looks at it, and the
 * one that needs POSIX's calls. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sqlite3_binding.h"

/* ------------------------------------------------------------------------------------------ */
/* Waiting for another connection's lock */

/* SQLite's own busy handler sleeps 1, 2, 5, 10, ... 100 ms between two tries: two nginx workers
 * taking turns at one database, each holding the lock for a fraction of a millisecond, would
 * spend most of their time asleep. This one tries again after 100 us, then 200, 400, 800, then
 * every millisecond, until busy_timeout has passed. */
static int sqlite_busy_wait(void *data, int tries)
{
    const sqlite_database *db = (const sqlite_database *)data;
    long long waited = tries <= 4 ? 100LL * ((1LL << tries) - 1) : 1500LL + (tries - 4) * 1000LL;
    struct timespec pause;
    if (waited >= (long long)db->busy_timeout * 1000)
        return 0;
    pause.tv_sec = 0;
    pause.tv_nsec = (tries < 4 ? 100L << tries : 1000L) * 1000L;
    nanosleep(&pause, NULL);
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Failed system calls */

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
/* open */

/* open(path [, opts]) -> db | nil, msg, code */
int sqlite_open(lua_State *L)
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
    db->busy_timeout = 0;
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
    db->busy_timeout = s.busy_timeout;
    sqlite3_busy_handler(db->handle, sqlite_busy_wait, db);
    return 1;
}
