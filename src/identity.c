/* The user the process acts as: who it is, and, for the command line started by root on a
 * journal that nginx's workers own, becoming that owner for good, so that nothing it writes is
 * root's. Not used on nginx's request path. */
#define _DEFAULT_SOURCE

#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "compat.h"
#include "identity.h"

/* process_user(): the effective uid and gid. */
static int identity_process_user(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)geteuid());
    lua_pushinteger(L, (lua_Integer)getegid());
    return 2;
}

static int identity_fail(lua_State *L, const char *what, int err)
{
    lua_pushnil(L);
    lua_pushfstring(L, "cannot %s: %s", what, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

/* switch_user(uid, gid): the process becomes uid with gid as its only group, real, effective and
 * saved ids alike, so that it cannot become root again; true, or nil, msg, errno. */
static int identity_switch_user(lua_State *L)
{
    lua_Integer uid = luaL_checkinteger(L, 1);
    lua_Integer gid = luaL_checkinteger(L, 2);
    gid_t group = (gid_t)gid;
    luaL_argcheck(L, uid >= 0 && (lua_Integer)(uid_t)uid == uid, 1, "a user id");
    luaL_argcheck(L, gid >= 0 && (lua_Integer)group == gid, 2, "a group id");
    if (geteuid() == 0 && setgroups(1, &group) != 0)
        return identity_fail(L, "set the groups", errno);
    if (setgid(group) != 0)
        return identity_fail(L, "set the group id", errno);
    if (setuid((uid_t)uid) != 0)
        return identity_fail(L, "set the user id", errno);
    if (uid != 0 && (setuid(0) == 0 || geteuid() != (uid_t)uid))
        return identity_fail(L, "leave root for good", EPERM);
    lua_pushboolean(L, 1);
    return 1;
}

void identity_register(lua_State *L)
{
    lua_pushcfunction(L, identity_process_user);
    lua_setfield(L, -2, "process_user");
    lua_pushcfunction(L, identity_switch_user);
    lua_setfield(L, -2, "switch_user");
}
