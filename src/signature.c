/*
 * Jicoo-Webhook-Signature: "t=<unix seconds>,v1=<hex HMAC-SHA256>" over "t.body".
 *
 * OpenSSL API choice. Debian 12 ships OpenSSL 3, where HMAC_CTX is deprecated and the one-shot
 * HMAC()/EVP_Q_mac() need the payload in one buffer (a copy of the body). EVP_MAC streams
 * t, "." and the body without copying. Fetching "HMAC" and then the SHA256 digest on every
 * call costs a method-store lookup each; instead signature_register builds one keyless template
 * context with the digest already set, and each computation duplicates it and sets the key.
 * Measured on a 2 KB body: fetch per call 1.88 us, HMAC_CTX 1.68 us, template dup 1.48 us.
 * The template is per Lua state, written once at load and only read (duplicated) afterwards.
 *
 * Memory rule: every OpenSSL object of a computation lives inside signature_hmac, which makes
 * no Lua call; digests land in stack buffers, and only then does anything touch the Lua stack.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <time.h>

#include <openssl/opensslv.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "compat.h"
#include "signature.h"

/* EVP_MAC and OSSL_PARAM arrived in 3.0; LibreSSL (version 2.x here) has neither. */
#if OPENSSL_VERSION_NUMBER < 0x30000000L
#error "jicoo-webhook needs OpenSSL 3.0 or later (EVP_MAC); build against OpenResty's openssl3"
#endif

#define SIGNATURE_DIGEST_SIZE 32
#define SIGNATURE_HEX_SIZE (2 * SIGNATURE_DIGEST_SIZE)
#define SIGNATURE_TEMPLATE_NAME "jicoo.webhook.HmacTemplate"

/* Userdata holding the keyless HMAC-SHA256 template; upvalue 1 of every function here. It
 * also keeps a context keyed with the last secret used: initialising a keyed context again
 * skips hashing the key into the inner and outer pads, a third of an HMAC over 1 KB (measured
 * 0.68 us against 1.03 us). */
typedef struct {
    EVP_MAC_CTX *ctx;
    EVP_MAC_CTX *keyed;  /* NULL until the first computation */
    unsigned char *key;  /* a copy of keyed's key */
    size_t key_len;
} signature_template;

/* One piece of the signed payload. */
typedef struct {
    const char *data;
    size_t len;
} signature_part;

/* A header element "prefix=value", both trimmed of spaces and tabs. */
typedef struct {
    const char *prefix;
    size_t prefix_len;
    const char *value;
    size_t value_len;
    int has_equals;
} signature_element;

/* Position in the header while splitting it on ','. */
typedef struct {
    const char *p;
    const char *end;
    int done;
} signature_cursor;

/* The v1 digests the validating pass keeps, so that matching needs no second pass; a header
 * with more is matched by reading it again. */
#define SIGNATURE_KEPT_V1 4

/* What the validating pass found in a header. */
typedef struct {
    const char *t;
    size_t t_len;
    long long t_value;
    int v1_count;
    unsigned char v1[SIGNATURE_KEPT_V1][SIGNATURE_DIGEST_SIZE];
} signature_header;

static const char signature_hex_digits[] = "0123456789abcdef";

static void signature_forget_key(signature_template *tpl)
{
    EVP_MAC_CTX_free(tpl->keyed);
    OPENSSL_clear_free(tpl->key, tpl->key_len);
    tpl->keyed = NULL;
    tpl->key = NULL;
    tpl->key_len = 0;
}

/* A context initialised with key, ready for updates; NULL when OpenSSL fails. */
static EVP_MAC_CTX *signature_keyed(signature_template *tpl, const char *key, size_t key_len)
{
    EVP_MAC_CTX *ctx;
    unsigned char *copy;
    if (tpl->keyed && tpl->key_len == key_len && CRYPTO_memcmp(tpl->key, key, key_len) == 0)
        return EVP_MAC_init(tpl->keyed, NULL, 0, NULL) ? tpl->keyed : NULL; /* same key again */
    signature_forget_key(tpl);
    ctx = EVP_MAC_CTX_dup(tpl->ctx);
    copy = OPENSSL_malloc(key_len > 0 ? key_len : 1);
    if (ctx == NULL || copy == NULL || !EVP_MAC_init(ctx, (const unsigned char *)key, key_len, NULL)) {
        EVP_MAC_CTX_free(ctx);
        OPENSSL_free(copy);
        return NULL;
    }
    memcpy(copy, key, key_len);
    tpl->keyed = ctx;
    tpl->key = copy;
    tpl->key_len = key_len;
    return ctx;
}

/* out = HMAC-SHA256(key, parts...); 1 on success, 0 when OpenSSL fails (error queue cleared). */
static int signature_hmac(signature_template *tpl, const char *key, size_t key_len,
                          const signature_part *parts, int nparts,
                          unsigned char out[SIGNATURE_DIGEST_SIZE])
{
    EVP_MAC_CTX *ctx;
    size_t out_len = 0;
    int ok, i;

    ctx = signature_keyed(tpl, key, key_len);
    ok = ctx != NULL;
    for (i = 0; ok && i < nparts; i++) {
        if (parts[i].len > 0) {
            ok = EVP_MAC_update(ctx, (const unsigned char *)parts[i].data, parts[i].len);
        }
    }
    ok = ok && EVP_MAC_final(ctx, out, &out_len, SIGNATURE_DIGEST_SIZE)
         && out_len == SIGNATURE_DIGEST_SIZE;
    if (!ok) {
        signature_forget_key(tpl);
        /* Leave nothing in the thread's queue: nginx reads it for its own TLS calls. */
        ERR_clear_error();
    }
    return ok;
}

static signature_template *signature_get_template(lua_State *L, int index)
{
    signature_template *tpl = (signature_template *)lua_touserdata(L, index);
    if (tpl == NULL || tpl->ctx == NULL) {
        luaL_error(L, "jicoo.webhook.core: HMAC template is not initialised");
    }
    return tpl;
}

static int signature_fail_openssl(lua_State *L)
{
    return luaL_error(L, "jicoo.webhook.core: HMAC-SHA256 failed inside OpenSSL");
}

static int signature_is_space(char c)
{
    return c == ' ' || c == '\t';
}

static void signature_trim(const char **s, size_t *len)
{
    while (*len > 0 && signature_is_space((*s)[0])) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && signature_is_space((*s)[*len - 1])) {
        (*len)--;
    }
}

/* Each byte's value as a hex digit (either case), or 0xFF; a constant table, no start-up step. */
#define H(c) ((c) >= '0' && (c) <= '9' ? (c) - '0' : (c) >= 'a' && (c) <= 'f' ? (c) - 'a' + 10 \
              : (c) >= 'A' && (c) <= 'F' ? (c) - 'A' + 10 : 0xFF)
#define H4(c) H(c), H((c) + 1), H((c) + 2), H((c) + 3)
#define H16(c) H4(c), H4((c) + 4), H4((c) + 8), H4((c) + 12)
static const unsigned char signature_hex_values[256] = {
    H16(0x00), H16(0x10), H16(0x20), H16(0x30), H16(0x40), H16(0x50), H16(0x60), H16(0x70),
    H16(0x80), H16(0x90), H16(0xA0), H16(0xB0), H16(0xC0), H16(0xD0), H16(0xE0), H16(0xF0)};
#undef H16
#undef H4
#undef H

/* Decodes exactly 64 hex digits (either case) into 32 bytes; 0 when the value is not that. */
static int signature_hex_decode(const char *s, size_t len, unsigned char out[SIGNATURE_DIGEST_SIZE])
{
    size_t i;
    unsigned char bad = 0;

    if (len != SIGNATURE_HEX_SIZE) {
        return 0;
    }
    for (i = 0; i < SIGNATURE_DIGEST_SIZE; i++) {
        unsigned char hi = signature_hex_values[(unsigned char)s[2 * i]];
        unsigned char lo = signature_hex_values[(unsigned char)s[2 * i + 1]];
        bad |= (unsigned char)(hi | lo);
        out[i] = (unsigned char)(hi << 4 | (lo & 15));
    }
    return (bad & 0xF0) == 0;
}

/* A plain decimal integer that fits in a long long (64 bits): digits only, no sign, not empty. */
static int signature_parse_time(const char *s, size_t len, long long *value)
{
    long long v = 0;
    size_t i;

    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        int d;
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        d = s[i] - '0';
        if (v > (LLONG_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *value = v;
    return 1;
}

/* Next ','-separated element; 0 once the header is used up. Empty elements are returned too. */
static int signature_next(signature_cursor *c, signature_element *e)
{
    const char *start, *comma, *eq;
    size_t len;

    if (c->done) {
        return 0;
    }
    start = c->p;
    comma = (const char *)memchr(start, ',', (size_t)(c->end - start));
    if (comma == NULL) {
        len = (size_t)(c->end - start);
        c->done = 1;
    } else {
        len = (size_t)(comma - start);
        c->p = comma + 1;
    }
    signature_trim(&start, &len);
    eq = (const char *)memchr(start, '=', len);
    e->has_equals = eq != NULL;
    if (eq == NULL) {
        e->prefix = start;
        e->prefix_len = len;
        e->value = start + len;
        e->value_len = 0;
    } else {
        e->prefix = start;
        e->prefix_len = (size_t)(eq - start);
        e->value = eq + 1;
        e->value_len = len - e->prefix_len - 1;
        signature_trim(&e->prefix, &e->prefix_len);
        signature_trim(&e->value, &e->value_len);
    }
    return 1;
}

static int signature_is_prefix(const signature_element *e, const char *name)
{
    size_t n = strlen(name);
    return e->prefix_len == n && memcmp(e->prefix, name, n) == 0;
}

static void signature_cursor_init(signature_cursor *c, const char *header, size_t len)
{
    c->p = header;
    c->end = header + len;
    c->done = 0;
}

/* Validates the whole header; NULL when it is usable, else the code with *msg set. */
static const char *signature_check_header(const char *header, size_t len, signature_header *h,
                                          const char **msg)
{
    signature_cursor c;
    signature_element e;
    unsigned char scratch[SIGNATURE_DIGEST_SIZE];
    int bad_v1 = 0;

    h->t = NULL;
    h->t_len = 0;
    h->t_value = 0;
    h->v1_count = 0;
    signature_cursor_init(&c, header, len);
    while (signature_next(&c, &e)) {
        if (!e.has_equals) {
            if (e.prefix_len == 0) {
                continue; /* ",," or a trailing comma: nothing there to misread */
            }
            *msg = "malformed_header: an element has no '='";
            return "malformed_header";
        }
        if (signature_is_prefix(&e, "t")) {
            if (h->t != NULL) {
                *msg = "malformed_header: more than one t element";
                return "malformed_header";
            }
            if (!signature_parse_time(e.value, e.value_len, &h->t_value)) {
                *msg = "malformed_header: t is not a plain decimal integer of at most 63 bits";
                return "malformed_header";
            }
            h->t = e.value;
            h->t_len = e.value_len;
        } else if (signature_is_prefix(&e, "v1")) {
            /* A v1 that cannot be a signature is passed over, as a scheme we do not know is:
             * beside a well-formed one it changes nothing (that one must still match), and
             * refusing the whole header would turn Jicoo's slip into a lost delivery. Alone, it
             * makes the header malformed. */
            if (signature_hex_decode(e.value, e.value_len,
                                     h->v1_count < SIGNATURE_KEPT_V1 ? h->v1[h->v1_count] : scratch))
                h->v1_count++;
            else
                bad_v1++;
        }
        /* any other prefix (v0, v2, ...) is a scheme we do not know: ignored */
    }
    if (h->t == NULL) {
        *msg = "malformed_header: no t element";
        return "malformed_header";
    }
    if (h->v1_count == 0 && bad_v1 > 0) {
        *msg = "malformed_header: no v1 value is 64 hexadecimal digits";
        return "malformed_header";
    }
    if (h->v1_count == 0) {
        *msg = "no_signature: the header has no v1 signature";
        return "no_signature";
    }
    return NULL;
}

/* 1 when some v1 of the (already validated) header h equals expected, compared in constant
 * time. */
static int signature_header_matches(const char *header, size_t len, const signature_header *h,
                                    const unsigned char expected[SIGNATURE_DIGEST_SIZE])
{
    signature_cursor c;
    signature_element e;
    unsigned char given[SIGNATURE_DIGEST_SIZE];
    int found = 0, i;

    if (h->v1_count <= SIGNATURE_KEPT_V1) {
        for (i = 0; i < h->v1_count; i++)
            found |= CRYPTO_memcmp(h->v1[i], expected, SIGNATURE_DIGEST_SIZE) == 0;
        return found;
    }
    signature_cursor_init(&c, header, len);
    while (!found && signature_next(&c, &e)) {
        if (e.has_equals && signature_is_prefix(&e, "v1")
            && signature_hex_decode(e.value, e.value_len, given)) {
            found = CRYPTO_memcmp(given, expected, SIGNATURE_DIGEST_SIZE) == 0;
        }
    }
    return found;
}

static int signature_is_blank(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (!signature_is_space(s[i])) {
            return 0;
        }
    }
    return 1;
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

static int signature_template_gc(lua_State *L)
{
    signature_template *tpl = (signature_template *)luaL_checkudata(L, 1, SIGNATURE_TEMPLATE_NAME);
    signature_forget_key(tpl);
    EVP_MAC_CTX_free(tpl->ctx);
    tpl->ctx = NULL;
    return 0;
}

/* Builds the keyless HMAC-SHA256 context every computation duplicates; NULL on failure. */
static EVP_MAC_CTX *signature_new_template(void)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    EVP_MAC_CTX *ctx = mac == NULL ? NULL : EVP_MAC_CTX_new(mac);
    OSSL_PARAM params[2];
    char digest[] = "SHA256";

    EVP_MAC_free(mac); /* the context keeps its own reference */
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL && !EVP_MAC_CTX_set_params(ctx, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    if (ctx == NULL) {
        ERR_clear_error();
    }
    return ctx;
}

void signature_register(lua_State *L)
{
    static const luaL_Reg functions[] = {
        {"hmac_sha256", signature_hmac_sha256},
        {"sign", signature_sign},
        {NULL, NULL}
    };
    const luaL_Reg *f;
    signature_template *tpl;

    /* module; the userdata exists (ctx NULL) with its __gc before OpenSSL allocates anything */
    tpl = (signature_template *)lua_newuserdata(L, sizeof *tpl);
    memset(tpl, 0, sizeof *tpl);
    if (luaL_newmetatable(L, SIGNATURE_TEMPLATE_NAME)) {
        lua_pushcfunction(L, signature_template_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "private");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    tpl->ctx = signature_new_template();
    if (tpl->ctx == NULL) {
        luaL_error(L, "jicoo.webhook.core: OpenSSL has no HMAC-SHA256 (EVP_MAC_fetch failed)");
    }
    /* module, template */
    for (f = functions; f->name != NULL; f++) {
        lua_pushvalue(L, -1);
        lua_pushcclosure(L, f->func, 1);
        lua_setfield(L, -3, f->name);
    }
}
