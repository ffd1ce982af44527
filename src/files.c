/* The file system calls of the Lua layer, most of which Lua's io library cannot make: a file
 * replaced so that a crash at any point leaves the old or the new one whole (temp file, fsync,
 * rename, fsync of the folder), a folder listing with modification times, a whole file read,
 * what a path is (lstat: a link is never followed), a mode set without following a link, a
 * folder made with an exact mode. The parser never calls these; the journal's folder checks,
 * the script loader, the nginx adapter (a spooled body) and the command line do, on a local
 * file system.
 *
 * Failures a caller can meet (a full disk, a folder it cannot write) return nil, msg, errno with
 * the path named in msg; misuse (an argument of the wrong type) raises. */
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <dirent.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compat.h"
#include "files.h"

/* A path argument: a NUL inside would name another file than the caller meant. */
static const char *files_path(lua_State *L, int index, size_t *len)
{
    const char *path = luaL_checklstring(L, index, len);
    luaL_argcheck(L, strlen(path) == *len, index, "a path holds no NUL byte");
    return path;
}

static int files_fail(lua_State *L, const char *what, const char *path, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s %s: %s", what, path, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* Syncs the folder that holds path, so that a rename or an unlink in it survives a crash. */
static int files_sync_folder(const char *path, size_t len)
{
    char folder[4096];
    int fd, err = 0;
    while (len > 0 && path[len - 1] != '/')
        len--;
    if (len == 0) {
        folder[0] = '.';
        len = 1;
    } else if (len >= sizeof folder) {
        return ENAMETOOLONG;
    } else {
        memcpy(folder, path, len);
    }
    folder[len] = '\0';
    fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    if (fsync(fd) != 0)
        err = errno;
    close(fd);
    return err;
}

static int files_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* replace(path, data): path holds data, or (on failure) what it held before. */
static int files_replace(lua_State *L)
{
    size_t path_len, len;
    const char *path = files_path(L, 1, &path_len);
    const char *data = luaL_checklstring(L, 2, &len);
    const char *temp;
    int fd, err;

    lua_pushfstring(L, "%s.tmp", path); /* the writer holds the record's lock: one writer */
    temp = lua_tostring(L, -1);
    fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return files_fail(L, "cannot create", temp, errno);
    err = files_write_all(fd, data, len);
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    if (err) {
        unlink(temp);
        return files_fail(L, "cannot write", temp, err);
    }
    if (rename(temp, path) != 0) {
        err = errno;
        unlink(temp);
        return files_fail(L, "cannot rename to", path, err);
    }
    if ((err = files_sync_folder(path, path_len)) != 0)
        return files_fail(L, "cannot sync the folder of", path, err);
    lua_pushboolean(L, 1);
    return 1;
}

/* list(folder): { [name] = modification time in seconds }, "." and ".." left out. */
static int files_list(lua_State *L)
{
    size_t len;
    const char *folder = files_path(L, 1, &len);
    DIR *dir;
    struct dirent *entry;
    struct stat st;
    int err;

    lua_newtable(L);
    dir = opendir(folder);
    if (!dir)
        return files_fail(L, "cannot open the folder", folder, errno);
    for (;;) {
        errno = 0;
        entry = readdir(dir);
        if (!entry)
            break;
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        /* A name removed between readdir and fstatat is left out. */
        if (fstatat(dirfd(dir), entry->d_name, &st, 0) != 0)
            continue;
        lua_pushnumber(L, (lua_Number)st.st_mtime);
        lua_setfield(L, -2, entry->d_name);
    }
    err = errno;
    closedir(dir);
    if (err)
        return files_fail(L, "cannot read the folder", folder, err);
    return 1;
}

/* read(path): the file's bytes, all of them; the one reader of files the Lua layer has (the
 * journal's records, handler scripts, a request body nginx spooled, the command line's input). */
static int files_read(lua_State *L)
{
    size_t len;
    const char *path = files_path(L, 1, &len);
    luaL_Buffer b;
    int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
    if (fd < 0)
        return files_fail(L, "cannot open", path, errno);
    luaL_buffinit(L, &b);
    for (;;) {
        char *chunk = luaL_prepbuffer(&b);
        ssize_t n = read(fd, chunk, LUAL_BUFFERSIZE);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (n == 0)
            break;
        luaL_addsize(&b, (size_t)n);
    }
    close(fd);
    if (err)
        return files_fail(L, "cannot read", path, err);
    luaL_pushresult(&b);
    return 1;
}

/* mkdir(path [, mode]): true once path is a folder. A folder made here gets exactly mode (0755
 * by default, whatever the umask); one that was there keeps its own. */
static int files_mkdir(lua_State *L)
{
    size_t len;
    const char *path = files_path(L, 1, &len);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755) & 07777;
    struct stat st;
    if (mkdir(path, mode) != 0) {
        int err = errno;
        if (err != EEXIST || lstat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            return files_fail(L, "cannot create the folder", path, err);
    } else if (chmod(path, mode) != 0) {
        return files_fail(L, "cannot set the mode of", path, errno);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const char *files_kind(mode_t mode)
{
    if (S_ISREG(mode))
        return "file";
    if (S_ISDIR(mode))
        return "folder";
    if (S_ISLNK(mode))
        return "link";
    if (S_ISFIFO(mode))
        return "fifo";
    if (S_ISSOCK(mode))
        return "socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "device";
    return "other";
}

/* info(path): what path itself is, a link not followed: { kind = "file" | "folder" | "link" |
 * "fifo" | "socket" | "device" | "other", uid, gid, mode (the permission bits), links, size }. */
static int files_info(lua_State *L)
{
    size_t len;
    const char *path = files_path(L, 1, &len);
    struct stat st;
    if (lstat(path, &st) != 0)
        return files_fail(L, "cannot look at", path, errno);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, files_kind(st.st_mode));
    lua_setfield(L, -2, "kind");
    lua_pushinteger(L, (lua_Integer)st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_gid);
    lua_setfield(L, -2, "gid");
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)st.st_nlink);
    lua_setfield(L, -2, "links");
    lua_pushnumber(L, (lua_Number)st.st_size);
    lua_setfield(L, -2, "size");
    return 1;
}

/* chmod(path, mode): true, or nil, msg, errno; a symbolic link is refused (ELOOP), never
 * followed, and a FIFO is opened without waiting for a writer. */
static int files_chmod(lua_State *L)
{
    size_t len;
    const char *path = files_path(L, 1, &len);
    mode_t mode = (mode_t)luaL_checkinteger(L, 2) & 07777;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return files_fail(L, "cannot open", path, errno);
    if (fchmod(fd, mode) != 0) {
        int err = errno;
        close(fd);
        return files_fail(L, "cannot set the mode of", path, err);
    }
    close(fd);
    lua_pushboolean(L, 1);
    return 1;
}

void files_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"file_replace", files_replace}, {"file_list", files_list}, {"file_mkdir", files_mkdir},
        {"file_read", files_read},       {"file_info", files_info}, {"file_chmod", files_chmod},
        {NULL, NULL}};
    const luaL_Reg *f;
    for (f = functions; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}
