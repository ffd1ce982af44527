/* Jicoo-Webhook-Signature: HMAC-SHA256 over "t.body" with OpenSSL's libcrypto. */
#ifndef JICOO_SIGNATURE_H
#define JICOO_SIGNATURE_H

#include <lua.h>

/* Adds the signature functions to the module table on top of the stack; for LuaJIT's FFI
 * also signature_check and the HMAC template it takes, as core.signature_check and
 * core.hmac_template (light userdata). Leaves the template (a userdata) on top, for
 * signature_verify_at's callers. */
void signature_register(lua_State *L);

/* verify(body, header, secrets [, opts]) with its arguments at stack slots 1 to 4 and the
 * template at template_index; with shared_options, opts may hold other names (construct's
 * parse options). Pushes true, or false, msg, code; returns how many. */
int signature_verify_at(lua_State *L, int template_index, int shared_options);

/* verify without Lua, for LuaJIT's FFI: whether header signs body under one secret, with a
 * time within tolerance seconds of now (NaN: the system clock; a negative tolerance: the
 * default, 0: no time check). 0 says only "not verified": core.verify says why. */
int signature_check(void *hmac_template, const char *body, size_t body_len,
                    const char *header, size_t header_len, const char *secret,
                    size_t secret_len, double now, double tolerance);

#endif
