/* The benchmark's allocation counter (Lua 5.1 to 5.4; LuaJIT keeps its own allocator):
 * counter.count(true) puts a counting allocator in front of the state's own, count(false)
 * takes it away again (timed runs do not pay for it); counter.bytes() is how many bytes the
 * state asked for while counting, every new block and every block grown to its new size, as
 * malloc counts them, and counter.blocks() how many such requests it made. collectgarbage("count") only shows what is still in use: a table grown
 * four times in a row counts once there, five times here. */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

typedef struct {
    lua_Alloc inner;
    void *inner_ud;
    double bytes;
    double blocks;
} alloc_counter;

static void *alloc_counter_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    alloc_counter *counter = (alloc_counter *)ud;
    if (nsize > 0 && (ptr == NULL || nsize > osize)) {
        counter->bytes += (double)nsize;
        counter->blocks++;
    }
    return counter->inner(counter->inner_ud, ptr, osize, nsize);
}

/* One counter for the process: it must outlive the state's last free, which comes after the
 * state has collected everything it holds. The benchmark runs one state. */
static alloc_counter the_counter;

static int alloc_counter_bytes(lua_State *L)
{
    lua_pushnumber(L, the_counter.bytes);
    return 1;
}

static int alloc_counter_blocks(lua_State *L)
{
    lua_pushnumber(L, the_counter.blocks);
    return 1;
}

static int alloc_counter_count(lua_State *L)
{
    if (lua_toboolean(L, 1))
        lua_setallocf(L, alloc_counter_alloc, &the_counter);
    else
        lua_setallocf(L, the_counter.inner, the_counter.inner_ud);
    return 0;
}

int luaopen_alloc_counter(lua_State *L);

int luaopen_alloc_counter(lua_State *L)
{
    Dl_info self;
    if (the_counter.inner != NULL)
        return luaL_error(L, "alloc_counter: already counting another Lua state");
    /* lua_close unloads C modules before its last frees, which may still come here */
    if (!dladdr((void *)(size_t)luaopen_alloc_counter, &self) ||
        !dlopen(self.dli_fname, RTLD_NOW | RTLD_NODELETE))
        return luaL_error(L, "alloc_counter: cannot pin itself in memory");
    the_counter.inner = lua_getallocf(L, &the_counter.inner_ud);
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, alloc_counter_bytes);
    lua_setfield(L, -2, "bytes");
    lua_pushcfunction(L, alloc_counter_blocks);
    lua_setfield(L, -2, "blocks");
    lua_pushcfunction(L, alloc_counter_count);
    lua_setfield(L, -2, "count");
    return 1;
}
