/* The Jicoo-Webhook-Signature header read (signature_header.c): its elements, its t and its v1
 * digests, and those digests matched against an expected one in constant time. */
#ifndef JICOO_SIGNATURE_HEADER_H
#define JICOO_SIGNATURE_HEADER_H

#include <stddef.h>

#include "signature.h"

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

/* Whether the header holds nothing but spaces and tabs. */
int signature_is_blank(const char *s, size_t len);

/* Validates the whole header; NULL when it is usable, else the code with *msg set. */
const char *signature_check_header(const char *header, size_t len, signature_header *h,
                                   const char **msg);

/* 1 when some v1 of the (already validated) header h equals expected, compared in constant
 * time. */
int signature_header_matches(const char *header, size_t len, const signature_header *h,
                             const unsigned char expected[SIGNATURE_DIGEST_SIZE]);

#endif
