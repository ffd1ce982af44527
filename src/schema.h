/* The Jicoo payload described as data: one table of fields per type, read by the walk. */
#ifndef JICOO_SCHEMA_H
#define JICOO_SCHEMA_H

#include <stddef.h>
#include "compat.h"

typedef enum schema_kind { SCHEMA_STRING, SCHEMA_OBJECT, SCHEMA_ARRAY } schema_kind;

typedef enum schema_format {
    SCHEMA_TEXT,     /* any string */
    SCHEMA_NONEMPTY, /* an id: at least one byte */
    SCHEMA_DATETIME  /* RFC 3339 date-time */
} schema_format;

enum {
    SCHEMA_REQUIRED = 1,        /* required at both levels */
    SCHEMA_STRICT_REQUIRED = 2, /* required at the strict level; may be absent at the lenient one */
    SCHEMA_NULLABLE = 4,        /* may be null */
    SCHEMA_STRING_AS_LIST = 8   /* lenient level: a lone string stands for a one-item list */
};

typedef struct schema_field {
    const char *name;
    size_t name_len;
    schema_kind kind;
    unsigned flags;
    schema_format format;
    const char *const *values;        /* SCHEMA_STRING: the known values, NULL-terminated, closed
                                         at the strict level; NULL for free text */
    const struct schema_type *type;   /* SCHEMA_OBJECT: its type */
    const struct schema_field *items; /* SCHEMA_ARRAY: what each item is */
} schema_field;

/* An object type. Walking one tracks the keys seen in a bit set, hence at most 32 fields. */
typedef struct schema_type {
    const char *name;      /* "Booking" */
    const char *metatable; /* "jicoo.webhook.Booking" */
    const schema_field *fields;
    size_t nfields;
} schema_type;

/* The root type (a delivery) and every type, NULL-terminated. */
extern const schema_type schema_event;
extern const schema_type *const schema_types[];

/* Pushes a Lua description of every type, for the Lua layer, the docs and the tests. */
void schema_push_description(lua_State *L);

/* "string", "object" or "array". */
const char *schema_kind_name(schema_kind kind);

#endif
