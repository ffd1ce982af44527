/* The benchmark's floor (Lua 5.1 to 5.4): what building parse's result costs when nothing has to
 * be read, checked or decoded. floor.compile(value) records a tree of tables (parse's result) as
 * a program, and returns a function that builds the same tree again on each call, the way the
 * core builds it at best: each table created at its final size, each key interned once (an
 * upvalue), each string value copied from bytes with lua_pushlstring, each entry stored with
 * lua_rawset or lua_rawseti, the same metatables. The benchmark checks the copy equal to the
 * original before timing it. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

enum {
    FLOOR_TABLE,   /* a: array items, b: other entries; pushes a new table */
    FLOOR_STRING,  /* a: where in the bytes, b: length; pushes the string */
    FLOOR_NUMBER,  /* a: which number; pushes it */
    FLOOR_BOOLEAN, /* a: 0 or 1 */
    FLOOR_KEY,     /* a: the key's upvalue; pushes it */
    FLOOR_SET,     /* stores the key and value on top into the table below them */
    FLOOR_SET_ITEM,/* a: index; stores the value on top into the table below it */
    FLOOR_META     /* a: the metatable's upvalue; sets it on the table on top */
};

typedef struct floor_op {
    int code;
    size_t a, b;
} floor_op;

/* The program, held by the builder's first upvalue. */
typedef struct floor_program {
    floor_op *ops;
    size_t nops, cap_ops;
    char *bytes;
    size_t nbytes, cap_bytes;
    lua_Number *numbers;
    size_t nnumbers, cap_numbers;
    int upvalues; /* keys and metatables, from upvalue 2 */
} floor_program;

/* Constant upvalues a C closure may have, less the program's own. */
#define FLOOR_MAX_UPVALUES 254

static void *floor_grow(lua_State *L, void *block, size_t *cap, size_t need, size_t size)
{
    size_t n = *cap ? *cap : 64;
    void *grown;
    if (need <= *cap)
        return block;
    while (n < need)
        n *= 2;
    grown = realloc(block, n * size);
    if (!grown)
        luaL_error(L, "floor: out of memory");
    *cap = n;
    return grown;
}

static void floor_emit(lua_State *L, floor_program *pr, int code, size_t a, size_t b)
{
    pr->ops = floor_grow(L, pr->ops, &pr->cap_ops, pr->nops + 1, sizeof *pr->ops);
    pr->ops[pr->nops].code = code;
    pr->ops[pr->nops].a = a;
    pr->ops[pr->nops].b = b;
    pr->nops++;
}

/* The upvalue that holds the value on top (popped), added to the table at `seen` (value ->
 * upvalue number) and pushed below the builder's arguments on first sight. */
static size_t floor_constant(lua_State *L, floor_program *pr, int seen, int constants)
{
    size_t n;
    lua_pushvalue(L, -1);
    lua_rawget(L, seen);
    if (!lua_isnil(L, -1)) {
        n = (size_t)lua_tonumber(L, -1);
        lua_pop(L, 2);
        return n;
    }
    lua_pop(L, 1);
    if (pr->upvalues == FLOOR_MAX_UPVALUES)
        luaL_error(L, "floor: more than %d distinct keys and metatables", FLOOR_MAX_UPVALUES);
    n = (size_t)(++pr->upvalues + 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, constants, pr->upvalues);
    lua_pushnumber(L, (lua_Number)n);
    lua_rawset(L, seen);
    return n;
}

static size_t floor_count_items(lua_State *L, int t)
{
    size_t n = 0;
    for (;;) {
        lua_rawgeti(L, t, (int)n + 1);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            return n;
        }
        lua_pop(L, 1);
        n++;
    }
}

/* Records the value at index v. */
static void floor_record(lua_State *L, floor_program *pr, int v, int seen, int constants, int depth)
{
    size_t len, items, others = 0, i;
    const char *s;
    v = v < 0 ? lua_gettop(L) + v + 1 : v;
    luaL_checkstack(L, 8, "floor: nested too deep");
    switch (lua_type(L, v)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, v, &len);
        pr->bytes = floor_grow(L, pr->bytes, &pr->cap_bytes, pr->nbytes + len + 1, 1);
        memcpy(pr->bytes + pr->nbytes, s, len);
        floor_emit(L, pr, FLOOR_STRING, pr->nbytes, len);
        pr->nbytes += len;
        return;
    case LUA_TNUMBER:
        pr->numbers = floor_grow(L, pr->numbers, &pr->cap_numbers, pr->nnumbers + 1,
                                 sizeof *pr->numbers);
        pr->numbers[pr->nnumbers] = lua_tonumber(L, v);
        floor_emit(L, pr, FLOOR_NUMBER, pr->nnumbers++, 0);
        return;
    case LUA_TBOOLEAN:
        floor_emit(L, pr, FLOOR_BOOLEAN, (size_t)lua_toboolean(L, v), 0);
        return;
    case LUA_TTABLE:
        break;
    default:
        luaL_error(L, "floor: cannot record a %s", luaL_typename(L, v));
    }
    if (depth > 100)
        luaL_error(L, "floor: nested too deep");
    items = floor_count_items(L, v);
    lua_pushnil(L);
    while (lua_next(L, v)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING)
            others++;
        else if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "floor: a key that is neither a string nor an item");
    }
    floor_emit(L, pr, FLOOR_TABLE, items, others);
    for (i = 1; i <= items; i++) {
        lua_rawgeti(L, v, (int)i);
        floor_record(L, pr, -1, seen, constants, depth + 1);
        lua_pop(L, 1);
        floor_emit(L, pr, FLOOR_SET_ITEM, i, 0);
    }
    lua_pushnil(L);
    while (lua_next(L, v)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            lua_pushvalue(L, -2);
            floor_emit(L, pr, FLOOR_KEY, floor_constant(L, pr, seen, constants), 0);
            floor_record(L, pr, -1, seen, constants, depth + 1);
            floor_emit(L, pr, FLOOR_SET, 0, 0);
        }
        lua_pop(L, 1);
    }
    if (lua_getmetatable(L, v))
        floor_emit(L, pr, FLOOR_META, floor_constant(L, pr, seen, constants), 0);
}

/* The builder: runs the program. */
static int floor_build(lua_State *L)
{
    const floor_program *pr = lua_touserdata(L, lua_upvalueindex(1));
    const floor_op *op = pr->ops, *end = pr->ops + pr->nops;
    luaL_checkstack(L, 2 * 100 + 8, "floor: nested too deep");
    for (; op < end; op++) {
        switch (op->code) {
        case FLOOR_TABLE: lua_createtable(L, (int)op->a, (int)op->b); break;
        case FLOOR_STRING: lua_pushlstring(L, pr->bytes + op->a, op->b); break;
        case FLOOR_NUMBER: lua_pushnumber(L, pr->numbers[op->a]); break;
        case FLOOR_BOOLEAN: lua_pushboolean(L, (int)op->a); break;
        case FLOOR_KEY: lua_pushvalue(L, lua_upvalueindex((int)op->a)); break;
        case FLOOR_SET: lua_rawset(L, -3); break;
        case FLOOR_SET_ITEM: lua_rawseti(L, -2, (int)op->a); break;
        case FLOOR_META:
            lua_pushvalue(L, lua_upvalueindex((int)op->a));
            lua_setmetatable(L, -2);
            break;
        }
    }
    return 1;
}

static int floor_program_gc(lua_State *L)
{
    floor_program *pr = lua_touserdata(L, 1);
    free(pr->ops);
    free(pr->bytes);
    free(pr->numbers);
    memset(pr, 0, sizeof *pr);
    return 0;
}

/* floor.compile(value): the builder of a copy of value. */
static int floor_compile(lua_State *L)
{
    floor_program *pr;
    int seen, constants, i;
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    pr = lua_newuserdata(L, sizeof *pr); /* 2 */
    memset(pr, 0, sizeof *pr);
    lua_newtable(L);
    lua_pushcfunction(L, floor_program_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, 2);
    lua_newtable(L); /* 3: seen */
    lua_newtable(L); /* 4: constants in upvalue order */
    seen = 3, constants = 4;
    floor_record(L, pr, 1, seen, constants, 0);
    lua_settop(L, 4);
    lua_pushvalue(L, 2);
    for (i = 1; i <= pr->upvalues; i++)
        lua_rawgeti(L, constants, i);
    lua_pushcclosure(L, floor_build, pr->upvalues + 1);
    return 1;
}

int luaopen_floor(lua_State *L);

int luaopen_floor(lua_State *L)
{
    lua_newtable(L);
    lua_pushcfunction(L, floor_compile);
    lua_setfield(L, -2, "compile");
    return 1;
}
