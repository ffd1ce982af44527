/*
 * Jicoo-Webhook-Signature: "t=<unix seconds>,v1=<hex HMAC-SHA256>" over "t.body". The calls of
 * jicoo.webhook.core that sign and check it (signature.h): their arguments, the secrets, verify's
 * order of checks and its answers. The header is read by signature_header.c and the HMAC
 * computed by signature_hmac.c; no OpenSSL object reaches this file, only digests in stack
 * buffers.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "compat.h"
#include "signature.h"
#include "signature_header.h"
#include "signature_hmac.h"

static const char signature_hex_digits[] = "0123456789abcdef";

static int signature_fail_openssl(lua_State *L)
{
    return luaL_error(L, "jicoo.webhook.core: HMAC-SHA256 failed inside OpenSSL");
}

/* A non-negative integral Lua number as long long (5.1/LuaJIT: exact up to 2^53). */
static long long signature_check_time(lua_State *L, int arg)
{
#if COMPAT_HAS_INTEGERS
    int is_integer = 0;
    lua_Integer t = 0;
    if (lua_type(L, arg) == LUA_TNUMBER) {
        t = lua_tointegerx(L, arg, &is_integer);
    }
    luaL_argcheck(L, is_integer && t >= 0, arg, "non-negative integer expected");
    return (long long)t;
#else
    lua_Number t = lua_type(L, arg) == LUA_TNUMBER ? lua_tonumber(L, arg) : -1;
    luaL_argcheck(L, t >= 0 && t <= 9007199254740992.0 && floor(t) == t, arg,
                  "non-negative integer expected");
    return (long long)t;
#endif
}

static int signature_push_failure(lua_State *L, const char *code, const char *msg)
{
    lua_pushboolean(L, 0);
    lua_pushstring(L, msg);
    lua_pushstring(L, code);
    return 3;
}

/* core.hmac_sha256(key, msg) -> 32 raw bytes */
static int signature_hmac_sha256(lua_State *L)
{
    signature_template *tpl = signature_get_template(L, lua_upvalueindex(1));
    size_t key_len, msg_len;
    const char *key = luaL_checklstring(L, 1, &key_len);
    signature_part part;
    unsigned char out[SIGNATURE_DIGEST_SIZE];

    part.data = luaL_checklstring(L, 2, &msg_len);
    part.len = msg_len;
    if (!signature_hmac(tpl, key, key_len, &part, 1, out)) {
        return signature_fail_openssl(L);
    }
    lua_pushlstring(L, (const char *)out, sizeof out);
    return 1;
}

/* core.sign(secret, body [, t]) -> "t=<t>,v1=<64 lower-case hex>", t defaulting to now */
static int signature_sign(lua_State *L)
{
    signature_template *tpl = signature_get_template(L, lua_upvalueindex(1));
    size_t secret_len, body_len;
    const char *secret = luaL_checklstring(L, 1, &secret_len);
    const char *body = luaL_checklstring(L, 2, &body_len);
    long long t = lua_isnoneornil(L, 3) ? (long long)time(NULL) : signature_check_time(L, 3);
    unsigned char digest[SIGNATURE_DIGEST_SIZE];
    signature_part parts[2];
    char head[32]; /* "<at most 19 digits>." */
    char out[2 + 20 + 4 + SIGNATURE_HEX_SIZE + 1];
    int head_len, out_len, i;

    luaL_argcheck(L, secret_len > 0, 1, "empty secret");
    head_len = snprintf(head, sizeof head, "%lld.", t);
    parts[0].data = head;
    parts[0].len = (size_t)head_len;
    parts[1].data = body;
    parts[1].len = body_len;
    if (!signature_hmac(tpl, secret, secret_len, parts, 2, digest)) {
        return signature_fail_openssl(L);
    }
    out_len = snprintf(out, sizeof out, "t=%lld,v1=", t);
    for (i = 0; i < SIGNATURE_DIGEST_SIZE; i++) {
        out[out_len++] = signature_hex_digits[digest[i] >> 4];
        out[out_len++] = signature_hex_digits[digest[i] & 15];
    }
    lua_pushlstring(L, out, (size_t)out_len);
    return 1;
}

/* Raises unless secrets (at arg) is a non-empty string or a non-empty list of them. */
/* A secret with blanks around it is a copy-paste gone wrong (from a dashboard, an env file),
 * never what Jicoo signs with: misuse, said plainly, rather than a mismatch on every delivery. */
static void signature_check_secret(lua_State *L, int arg, int index)
{
    size_t len;
    const char *secret = lua_tolstring(L, index, &len);
    if (len > 0 && (strchr(" \t\r\n\v\f", secret[0]) || strchr(" \t\r\n\v\f", secret[len - 1])))
        luaL_argerror(L, arg, "the signing secret starts or ends with whitespace (a copy-paste?)");
}

static int signature_check_secrets(lua_State *L, int arg)
{
    int n, i;

    if (lua_type(L, arg) == LUA_TSTRING) {
        luaL_argcheck(L, lua_rawlen(L, arg) > 0, arg, "empty secret");
        signature_check_secret(L, arg, arg);
        return 0;
    }
    luaL_argcheck(L, lua_type(L, arg) == LUA_TTABLE, arg, "string or list of strings expected");
    n = (int)lua_rawlen(L, arg);
    luaL_argcheck(L, n > 0, arg, "empty list of secrets");
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, arg, i);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0, arg,
                      "secrets must be non-empty strings");
        signature_check_secret(L, arg, -1);
        lua_pop(L, 1);
    }
    return n;
}

/* The header at `arg` as one string: a header sent several times arrives as a list (as
 * ngx.req.get_headers gives it) and is joined with ',', as HTTP joins repeated fields. */
static const char *signature_read_header(lua_State *L, int arg, size_t *len)
{
    luaL_Buffer b;
    int i, n;
    *len = 0;
    if (lua_isnoneornil(L, arg))
        return NULL;
    if (lua_type(L, arg) != LUA_TTABLE) {
        luaL_argcheck(L, lua_type(L, arg) == LUA_TSTRING, arg, "string, list of strings or nil expected");
        return lua_tolstring(L, arg, len);
    }
    n = (int)lua_rawlen(L, arg);
    for (i = 1; i <= n; i++) { /* check first: a raise must not interrupt the buffer */
        lua_rawgeti(L, arg, i);
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING, arg,
                      "a list of header values must hold strings");
        lua_pop(L, 1);
    }
    luaL_buffinit(L, &b);
    for (i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, ',');
        lua_rawgeti(L, arg, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, arg);
    return lua_tolstring(L, arg, len);
}

/* Forgets a digest: a loop through a volatile pointer, which no compiler may drop. */
static void signature_forget(unsigned char digest[SIGNATURE_DIGEST_SIZE])
{
    volatile unsigned char *v = digest;
    int i;
    for (i = 0; i < SIGNATURE_DIGEST_SIZE; i++)
        v[i] = 0;
}

/* Whether the (already validated) header h signs body under secret: 1 yes, 0 no, -1 when
 * OpenSSL fails. */
static int signature_signs(signature_template *tpl, const char *header, size_t header_len,
                           const signature_header *h, const char *body, size_t body_len,
                           const char *secret, size_t secret_len)
{
    signature_part parts[3];
    unsigned char expected[SIGNATURE_DIGEST_SIZE];
    int matched;
    parts[0].data = h->t;
    parts[0].len = h->t_len;
    parts[1].data = ".";
    parts[1].len = 1;
    parts[2].data = body;
    parts[2].len = body_len;
    if (!signature_hmac(tpl, secret, secret_len, parts, 3, expected))
        return -1;
    matched = signature_header_matches(header, header_len, h, expected);
    signature_forget(expected);
    return matched;
}

/* Whether the header's time is within tolerance seconds of now (tolerance 0: any time). */
static int signature_in_time(const signature_header *h, double now, double tolerance)
{
    double age = now - (double)h->t_value;
    return !(tolerance > 0 && (age > tolerance || age < -tolerance));
}

void signature_read_request(lua_State *L, signature_request *r)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    r->body = lua_tolstring(L, 1, &r->body_len);
    r->header = signature_read_header(L, 2, &r->header_len);
    r->nsecrets = signature_check_secrets(L, 3);
}

/*
 * verify's answer: true | false, msg, code.
 * The signature is checked before the time, so "expired" is only ever said of a delivery
 * that is authentic (a replay or a skewed clock), never of a forgery.
 */
int signature_verify(lua_State *L, int template_index, const signature_request *r)
{
    signature_template *tpl = signature_get_template(L, template_index);
    size_t secret_len;
    const char *code, *msg = NULL, *secret;
    int i, matched = 0;
    double now = r->now == r->now ? r->now : (double)time(NULL);
    signature_header h;

    if (r->header == NULL || signature_is_blank(r->header, r->header_len)) {
        return signature_push_failure(L, "missing_header",
                                      "missing_header: no Jicoo-Webhook-Signature header");
    }
    code = signature_check_header(r->header, r->header_len, &h, &msg);
    if (code != NULL) {
        return signature_push_failure(L, code, msg);
    }

    /* nsecrets == 0: one secret at index 3; else a list whose items were checked as strings,
       so lua_rawgeti and lua_tolstring below cannot raise or allocate */
    for (i = 0; matched == 0 && i < (r->nsecrets == 0 ? 1 : r->nsecrets); i++) {
        if (r->nsecrets == 0) {
            secret = lua_tolstring(L, 3, &secret_len);
        } else {
            lua_rawgeti(L, 3, i + 1);
            secret = lua_tolstring(L, -1, &secret_len);
        }
        matched = signature_signs(tpl, r->header, r->header_len, &h, r->body, r->body_len, secret,
                                  secret_len);
        if (r->nsecrets != 0) {
            lua_pop(L, 1); /* the table still anchors the string */
        }
    }
    if (matched < 0) {
        return signature_fail_openssl(L);
    }
    if (!matched) {
        return signature_push_failure(L, "mismatch",
                                      "mismatch: no v1 signature matches the body and secret");
    }
    if (!signature_in_time(&h, now, r->tolerance)) {
        char msg_buf[200];
        snprintf(msg_buf, sizeof msg_buf,
                 "expired: t=%lld is %.0f s %s now (%.0f), over the tolerance of %.0f s",
                 (long long)h.t_value, fabs(now - (double)h.t_value),
                 now > (double)h.t_value ? "before" : "after", now, r->tolerance);
        return signature_push_failure(L, "expired", msg_buf);
    }
    lua_pushboolean(L, 1);
    return 1;
}

void signature_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"hmac_sha256", signature_hmac_sha256},
        {"sign", signature_sign},
        {NULL, NULL}
    };
    const luaL_Reg *f;

    signature_push_template(L);
    /* module, template */
    for (f = functions; f->name != NULL; f++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -3, f->name);
    }
}
