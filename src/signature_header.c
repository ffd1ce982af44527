/* Reading the Jicoo-Webhook-Signature header, "t=<unix seconds>,v1=<hex HMAC-SHA256>", and
 * matching its v1 digests (signature_header.h). Apart from signature.c, which reads the call's
 * arguments and answers it, and from signature_hmac.c, which computes: everything here reads
 * bytes a stranger sent, and touches neither Lua nor a secret. */
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>

#include "signature_header.h"

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

const char *signature_check_header(const char *header, size_t len, signature_header *h,
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

int signature_header_matches(const char *header, size_t len, const signature_header *h,
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

int signature_is_blank(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (!signature_is_space(s[i])) {
            return 0;
        }
    }
    return 1;
}
