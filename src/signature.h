/* Jicoo-Webhook-Signature: HMAC-SHA256 over "t.body" with OpenSSL's libcrypto. */
#ifndef JICOO_SIGNATURE_H
#define JICOO_SIGNATURE_H

#include <lua.h>

/* Adds the signature functions to the module table on top of the stack; for LuaJIT's FFI
 * also signature_check and the HMAC template it takes, as core.signature_check and
 * core.hmac_template (light userdata). */
void signature_register(lua_State *L);

/* verify without Lua, for LuaJIT's FFI: whether header signs body under one secret, with a
 * time within tolerance seconds of now (NaN: the system clock; a negative tolerance: the
 * default, 0: no time check). 0 says only "not verified": core.verify says why. */
int signature_check(void *hmac_template, const char *body, size_t body_len,
                    const char *header, size_t header_len, const char *secret,
                    size_t secret_len, double now, double tolerance);

#endif
