/* HMAC-SHA256 with OpenSSL's libcrypto (signature_hmac.c), for the signature's calls
 * (signature.c): the per-state template, and a computation that makes no Lua call. */
#ifndef JICOO_SIGNATURE_HMAC_H
#define JICOO_SIGNATURE_HMAC_H

#include <stddef.h>
#include <lua.h>

#include "signature.h"

typedef struct signature_template signature_template;

/* One piece of the signed payload. */
typedef struct {
    const char *data;
    size_t len;
} signature_part;

/* Pushes the keyless HMAC-SHA256 template every computation starts from: a userdata the GC
 * frees, for the calls to keep as an upvalue. Raises when OpenSSL has no HMAC-SHA256. */
void signature_push_template(lua_State *L);

/* The template at index; raises when there is none there. */
signature_template *signature_get_template(lua_State *L, int index);

/* out = HMAC-SHA256(key, parts...); 1 on success, 0 when OpenSSL fails (error queue cleared). */
int signature_hmac(signature_template *tpl, const char *key, size_t key_len,
                   const signature_part *parts, int nparts,
                   unsigned char out[SIGNATURE_DIGEST_SIZE]);

#endif
