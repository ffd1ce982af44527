/* Jicoo-Webhook-Signature: HMAC-SHA256 over "t.body" with OpenSSL's libcrypto. */
#ifndef JICOO_SIGNATURE_H
#define JICOO_SIGNATURE_H

#include <stddef.h>
#include <lua.h>

#define SIGNATURE_DIGEST_SIZE 32
#define SIGNATURE_HEX_SIZE (2 * SIGNATURE_DIGEST_SIZE)

/* verify's arguments, once checked. */
typedef struct signature_request {
    const char *body;
    size_t body_len;
    const char *header; /* NULL when there is none */
    size_t header_len;
    int nsecrets;       /* 0: one secret, at stack slot 3; else a list of that many there */
    double tolerance;   /* seconds either way; 0: no time check */
    double now;         /* Unix seconds; NaN: the system clock */
} signature_request;

/* Adds hmac_sha256 and sign to the module table on top of the stack, and leaves the HMAC
 * template they share (a userdata) on top, for signature_verify's callers. */
void signature_register(lua_State *L);

/* Checks verify's first arguments, at stack slots 1 to 3 (body, header, secrets), into r; a bad
 * one raises. A header given as a list is joined (and replaced at slot 2). The times are left
 * to the caller, which reads the options. */
void signature_read_request(lua_State *L, signature_request *r);

/* Whether r's header signs its body: pushes true, or false, msg, code; returns how many. The
 * template is at template_index. */
int signature_verify(lua_State *L, int template_index, const signature_request *r);

#endif
