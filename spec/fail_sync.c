/* For spec/durability_spec.lua, loaded into nginx with LD_PRELOAD: fdatasync and fsync fail with
 * EIO while the file JICOO_TEST_FAIL_SYNC names (read once, when the library loads, since nginx
 * clears its workers' environment) exists, and do their work otherwise. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char flag[PATH_MAX];

__attribute__((constructor)) static void read_flag(void)
{
    const char *path = getenv("JICOO_TEST_FAIL_SYNC");
    if (path && strlen(path) < sizeof flag)
        strcpy(flag, path);
}

static int failing(void)
{
    return flag[0] != '\0' && access(flag, F_OK) == 0;
}

/* The call `name` of the C library, or EIO while the flag file exists. */
static int sync_or_fail(int fd, const char *name, int (**real)(int))
{
    if (failing()) {
        errno = EIO;
        return -1;
    }
    if (!*real)
        *real = (int (*)(int))dlsym(RTLD_NEXT, name);
    return (*real)(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    return sync_or_fail(fd, "fdatasync", &real);
}

int fsync(int fd)
{
    static int (*real)(int);
    return sync_or_fail(fd, "fsync", &real);
}
