/* Jicoo-Webhook-Signature: HMAC-SHA256 over "t.body" with OpenSSL's libcrypto. */
#ifndef JICOO_SIGNATURE_H
#define JICOO_SIGNATURE_H

#include <lua.h>

/* Adds the signature functions to the module table on top of the stack. */
void signature_register(lua_State *L);

#endif
