/* The allocation-failure sweep (issue 6). For each fixture and each call (parse at three option
 * sets, decode, verify and construct of a signed body, utf8_repair, check_options) it measures
 * the M allocations the call makes, then for every N from 1 to M + 1 runs the call again with
 * allocation N and every later one failing.
 * Each run must either succeed with the reference answer or raise LUA_ERRMEM through
 * lua_pcall; then the same call, without failures, must give the reference answer again (the
 * state stays usable). Loading the module is swept the same way. Built with ASan, UBSan and
 * LSan by spec/fuzz/CMakeLists.txt, so a crash or a leak fails the run.
 *
 * Usage: alloc_failure FIXTURE.json...   (exit status 0 when every run behaved) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <openssl/crypto.h>

int luaopen_jicoo_webhook_core(lua_State *L);

/* Counts growing allocations; from the fail_at-th on (0: never) they all fail, so that Lua's
 * emergency collection cannot retry its way past the injected failure. */
typedef struct alloc_meter {
    unsigned long count;
    unsigned long fail_at;
    unsigned long used; /* what the last alloc_run's call allocated */
} alloc_meter;

static void *alloc_metered(void *ud, void *ptr, size_t osize, size_t nsize)
{
    alloc_meter *m = (alloc_meter *)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr == NULL || nsize > osize) { /* osize is a type tag when ptr is NULL */
        m->count++;
        if (m->fail_at != 0 && m->count >= m->fail_at)
            return NULL;
    }
    return realloc(ptr, nsize);
}

/* OpenSSL's allocations, metered the same way (one process-wide meter: OpenSSL's hooks take
 * no user data). A failure there makes verify raise its "failed inside OpenSSL" error. */
static alloc_meter alloc_openssl;

static void *alloc_openssl_malloc(size_t size, const char *file, int line)
{
    (void)file, (void)line;
    alloc_openssl.count++;
    if (alloc_openssl.fail_at != 0 && alloc_openssl.count >= alloc_openssl.fail_at)
        return NULL;
    return malloc(size);
}

static void *alloc_openssl_realloc(void *ptr, size_t size, const char *file, int line)
{
    (void)file, (void)line;
    alloc_openssl.count++;
    if (alloc_openssl.fail_at != 0 && alloc_openssl.count >= alloc_openssl.fail_at)
        return NULL;
    return realloc(ptr, size);
}

static void alloc_openssl_free(void *ptr, const char *file, int line)
{
    (void)file, (void)line;
    free(ptr);
}

/* The calls to sweep, per body, as {function, nargs, args...}, and a canonical text of any
 * results, so that an answer can be compared with the reference one. */
static const char alloc_cases[] =
    "local core, body, label = ...\n"
    "local secret, now = 'whsec_alloc', 1700000000\n"
    "return {\n"
    "  { label .. ': parse', core.parse, 1, body },\n"
    "  { label .. ': parse strict/drop/null', core.parse, 2, body,\n"
    "    { level = 'strict', unknown_keys = 'drop', null = core.null } },\n"
    "  { label .. ': parse reject', core.parse, 2, body, { unknown_keys = 'reject' } },\n"
    "  { label .. ': decode', core.decode, 1, body },\n"
    "  { label .. ': verify', core.verify, 4, body, core.sign(secret, body, now),\n"
    "    { 'whsec_other', secret }, { tolerance = 300, now = now } },\n"
    "  { label .. ': verify mismatch', core.verify, 4, body, core.sign(secret, body, now),\n"
    "    'whsec_other', { tolerance = 300, now = now } },\n"
    "  { label .. ': construct', core.construct, 4, body, core.sign(secret, body, now),\n"
    "    secret, { now = now, level = 'strict' } },\n"
    "  { label .. ': construct mismatch', core.construct, 4, body, core.sign(secret, body, now),\n"
    "    'whsec_other', { now = now } },\n"
    "  { label .. ': utf8_repair', core.utf8_repair, 1, body .. '\\255' },\n"
    "  { label .. ': check_options', core.check_options, 2, 'construct',\n"
    "    { level = 'strict', max_size = 4096, now = now } },\n"
    "}\n";

static const char alloc_canon[] =
    "local null = ...\n"
    "local function canon(v, out)\n"
    "  if v == null then out[#out + 1] = 'null'\n"
    "  elseif type(v) ~= 'table' then out[#out + 1] = (math.type(v) or type(v)) ..\n"
    "    ':' .. string.format('%q', v)\n"
    "  else\n"
    "    local keys = {}\n"
    "    for k in pairs(v) do keys[#keys + 1] = k end\n"
    "    table.sort(keys, function(a, b)\n"
    "      if type(a) == type(b) then return a < b end\n"
    "      return type(a) < type(b)\n"
    "    end)\n"
    "    out[#out + 1] = '{' .. tostring((getmetatable(v) or {}).__name)\n"
    "    for _, k in ipairs(keys) do\n"
    "      canon(k, out); out[#out + 1] = '='; canon(v[k], out); out[#out + 1] = ';'\n"
    "    end\n"
    "    out[#out + 1] = '}'\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "return function(...) return table.concat(canon(table.pack(...), {})) end\n";

static int alloc_failures;

static void alloc_report(const char *label, unsigned long n, const char *what)
{
    fprintf(stderr, "alloc_failure: %s: failing from allocation %lu: %s\n", label, n, what);
    alloc_failures++;
}

/* Runs the case at `at` once, allocation fail_at on failing (0: none). Leaves the canonical
 * text of its results on top (or its error), and returns lua_pcall's status. */
static int alloc_run(lua_State *L, alloc_meter *m, int at, unsigned long fail_at)
{
    int top = lua_gettop(L), nargs, i, status;
    unsigned long before;
    lua_getfield(L, LUA_REGISTRYINDEX, "alloc.canon");  /* canon */
    luaL_checkstack(L, 40, "alloc_run");
    lua_rawgeti(L, at, 2);                              /* canon, function */
    lua_rawgeti(L, at, 3);
    nargs = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    for (i = 0; i < nargs; i++)
        lua_rawgeti(L, at, 4 + i);                      /* canon, function, args... */
    before = m->count;
    m->fail_at = fail_at ? before + fail_at : 0;
    status = lua_pcall(L, nargs, LUA_MULTRET, 0);       /* canon, results... or canon, error */
    m->fail_at = 0;
    m->used = m->count - before;
    if (status != LUA_OK) {
        lua_remove(L, top + 1);                         /* error */
        return status;
    }
    lua_call(L, lua_gettop(L) - top - 1, 1);            /* text */
    return status;
}

/* Sweeps one case, failing the allocations `m` meters (Lua's, or OpenSSL's when `openssl`):
 * returns how many runs failed. A Lua allocation failure must raise LUA_ERRMEM; an OpenSSL
 * one, LUA_ERRRUN with verify's "failed inside OpenSSL" error (the core cannot tell why). */
static unsigned long alloc_sweep(lua_State *L, alloc_meter *m, int openssl, int at)
{
    const char *label, *reference, *error;
    unsigned long needed, n, failed = 0;
    int status;

    lua_rawgeti(L, at, 1);
    label = lua_pushfstring(L, "%s%s", lua_tostring(L, -1), openssl ? " (OpenSSL)" : "");
    lua_setfield(L, LUA_REGISTRYINDEX, "alloc.label");  /* anchored there */
    lua_pop(L, 1);
    if (alloc_run(L, m, at, 0) != LUA_OK) {
        alloc_report(label, 0, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    reference = lua_tostring(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "alloc.reference"); /* anchored there */

    /* M: what the call allocates when a full collection has just run, as in the sweep */
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (alloc_run(L, m, at, 0) != LUA_OK) {
        alloc_report(label, 0, lua_tostring(L, -1));
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    needed = m->used;

    for (n = 1; n <= needed + 1; n++) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        status = alloc_run(L, m, at, n);
        error = lua_tostring(L, -1);
        if (status == LUA_OK) {
            if (strcmp(error, reference) != 0)
                alloc_report(label, n, "succeeded with a different answer");
        } else if (!openssl && status == LUA_ERRMEM) {
            failed++;
        } else if (openssl && status == LUA_ERRRUN && error && strstr(error, "OpenSSL")) {
            failed++;
        } else {
            alloc_report(label, n, error ? error : "an error that is not a string");
        }
        lua_pop(L, 1);
        /* the state still works, and still gives the reference answer */
        if (alloc_run(L, m, at, 0) != LUA_OK || strcmp(lua_tostring(L, -1), reference) != 0)
            alloc_report(label, n, "the next call, without failures, went wrong");
        lua_pop(L, 1);
    }
    if (n > 1 && needed > 0 && failed == 0)
        alloc_report(label, 1, "no run failed");
    printf("%-62s %4lu allocations, %4lu failed runs of %4lu\n", label, needed, failed,
           needed + 1);
    return failed;
}

/* Loading the module with failing allocations: a memory error or a module, never a crash or a
 * leak (the HMAC template is freed by its __gc at lua_close). */
static void alloc_sweep_load(void)
{
    unsigned long n, needed = 0, errmem = 0, before;
    int status;
    for (n = 0; n <= needed + 1; n++) { /* n = 0 measures */
        alloc_meter m = {0, 0, 0};
        lua_State *L = lua_newstate(alloc_metered, &m);
        if (!L) {
            alloc_report("load", n, "no state");
            return;
        }
        luaL_openlibs(L);
        lua_pushcfunction(L, luaopen_jicoo_webhook_core);
        before = m.count;
        m.fail_at = n ? before + n : 0;
        status = lua_pcall(L, 0, 1, 0);
        m.fail_at = 0;
        if (n == 0)
            needed = m.count - before;
        if (status == LUA_ERRMEM)
            errmem++;
        else if (status != LUA_OK || !lua_istable(L, -1))
            alloc_report("load", n, "neither a module nor a memory error");
        lua_close(L);
    }
    printf("%-62s %4lu allocations, %4lu failed runs of %4lu\n", "load", needed, errmem,
           needed + 1);
}

static char *alloc_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long size;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(2);
    }
    data = malloc((size_t)size + 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size) {
        perror(path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

int main(int argc, char **argv)
{
    alloc_meter m = {0, 0, 0};
    lua_State *L;
    unsigned long runs = 0;
    int i, ncases, c;

    if (argc < 2) {
        fprintf(stderr, "usage: alloc_failure FIXTURE.json...\n");
        return 2;
    }
    if (!CRYPTO_set_mem_functions(alloc_openssl_malloc, alloc_openssl_realloc, alloc_openssl_free)) {
        fprintf(stderr, "alloc_failure: OpenSSL allocated before main\n");
        return 2;
    }
    alloc_sweep_load();

    L = lua_newstate(alloc_metered, &m);
    luaL_openlibs(L);
    luaL_requiref(L, "jicoo.webhook.core", luaopen_jicoo_webhook_core, 0); /* core */
    if (luaL_loadstring(L, alloc_canon) != LUA_OK)
        return fprintf(stderr, "%s\n", lua_tostring(L, -1)), 2;
    lua_getfield(L, 1, "null");
    lua_call(L, 1, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "alloc.canon");
    for (i = 1; i < argc; i++) {
        size_t len;
        char *body = alloc_read(argv[i], &len);
        const char *name = strrchr(argv[i], '/');
        if (luaL_loadstring(L, alloc_cases) != LUA_OK)
            return fprintf(stderr, "%s\n", lua_tostring(L, -1)), 2;
        lua_pushvalue(L, 1);
        lua_pushlstring(L, body, len);
        free(body);
        lua_pushstring(L, name ? name + 1 : argv[i]);
        lua_call(L, 3, 1);                                 /* core, cases */
        ncases = (int)lua_rawlen(L, 2);
        for (c = 1; c <= ncases; c++) {
            lua_rawgeti(L, 2, c);                          /* core, cases, case */
            runs += alloc_sweep(L, &m, 0, 3);
            runs += alloc_sweep(L, &alloc_openssl, 1, 3);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_close(L);
    printf("alloc_failure: %lu runs failed as they should, %d problems\n", runs, alloc_failures);
    return alloc_failures == 0 ? 0 : 1;
}
