/* What every fuzz target shares: one Lua 5.4 state with jicoo.webhook.core loaded, the
 * invariants of invariants.lua, and calls that abort() on any error, so libFuzzer reports it. */
#ifndef JICOO_FUZZ_HARNESS_H
#define JICOO_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* The state, made on the first call: core in the global `core`, the checks in `checks`. */
lua_State *harness_state(void);

/* Runs checks[name](input, variant): it calls the entry point itself through lua_pcall (see
 * harness_entry) and raises when an answer breaks an invariant. Any error aborts. */
void harness_check(lua_State *L, const char *name, const uint8_t *data, size_t size);

#endif
