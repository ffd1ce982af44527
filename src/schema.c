/* The Jicoo webhook payload, once, as data: Jicoo's webhook contract, as its published JSON
 * Schema (spec/fixtures/jicoo-webhook.schema.json) and documentation give it. */
#include "schema.h"

#define NAME(s) s, sizeof(s) - 1
#define TEXT(name, flags, format, values) \
    { NAME(name), SCHEMA_STRING, flags, format, values, NULL, NULL }
#define OBJECT(name, flags, type) \
    { NAME(name), SCHEMA_OBJECT, flags, SCHEMA_TEXT, NULL, &type, NULL }
#define LIST(name, flags, items) \
    { NAME(name), SCHEMA_ARRAY, flags, SCHEMA_TEXT, NULL, NULL, &items }
#define TYPE(name, fields) \
    { name, "jicoo.webhook." name, fields, sizeof(fields) / sizeof(fields[0]) }

enum {
    REQUIRED = SCHEMA_REQUIRED,
    STRICT_REQUIRED = SCHEMA_STRICT_REQUIRED,
    NULLABLE = SCHEMA_NULLABLE,
    STRING_AS_LIST = SCHEMA_STRING_AS_LIST
};

static const char *const event_names[] = {
    "guest_booked", "guest_rescheduled", "host_rescheduled", "guest_cancelled", "host_cancelled",
    NULL};

static const char *const booking_statuses[] = {"open", "cancel", NULL};

static const schema_field contact_fields[] = {
    TEXT("email", NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("name",  NULLABLE, SCHEMA_TEXT, NULL),
};
static const schema_type contact_type = TYPE("Contact", contact_fields);

static const schema_field tracking_fields[] = {
    TEXT("utm_campaign", NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("utm_source",   NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("utm_medium",   NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("utm_content",  NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("utm_term",     NULLABLE, SCHEMA_TEXT, NULL),
};
static const schema_type tracking_type = TYPE("Tracking", tracking_fields);

static const schema_field answer_content_item = TEXT("", 0, SCHEMA_TEXT, NULL);
static const schema_field answer_fields[] = {
    TEXT("question", REQUIRED, SCHEMA_TEXT, NULL),
    LIST("content",  REQUIRED | STRING_AS_LIST, answer_content_item),
};
static const schema_type answer_type = TYPE("Answer", answer_fields);

static const schema_field booking_answer_item = OBJECT("", 0, answer_type);
/* In the order Jicoo sends them, which is the order the walk tries first. */
static const schema_field booking_fields[] = {
    TEXT("status",         REQUIRED, SCHEMA_TEXT, booking_statuses),
    TEXT("timeZone",       REQUIRED, SCHEMA_NONEMPTY, NULL),
    TEXT("startedAt",      REQUIRED, SCHEMA_DATETIME, NULL),
    TEXT("endedAt",        REQUIRED, SCHEMA_DATETIME, NULL),
    TEXT("createdAt",      REQUIRED, SCHEMA_DATETIME, NULL),
    TEXT("updatedAt",      REQUIRED, SCHEMA_DATETIME, NULL),
    TEXT("uid",            REQUIRED, SCHEMA_NONEMPTY, NULL),
    TEXT("eventTypeUid",   REQUIRED, SCHEMA_NONEMPTY, NULL),
    OBJECT("contact",      REQUIRED, contact_type),
    LIST("answers",        REQUIRED, booking_answer_item),
    OBJECT("tracking",     REQUIRED, tracking_type),
    TEXT("cancelReason",   STRICT_REQUIRED | NULLABLE, SCHEMA_TEXT, NULL),
    TEXT("cancelledAt",    STRICT_REQUIRED | NULLABLE, SCHEMA_DATETIME, NULL),
    TEXT("cancelledBy",    STRICT_REQUIRED | NULLABLE, SCHEMA_TEXT, NULL),
};
static const schema_type booking_type = TYPE("Booking", booking_fields);

static const schema_field event_fields[] = {
    TEXT("createdAt", REQUIRED, SCHEMA_DATETIME, NULL),
    TEXT("event",     REQUIRED, SCHEMA_TEXT, event_names),
    OBJECT("object",  REQUIRED, booking_type),
};
const schema_type schema_event = TYPE("Event", event_fields);

const schema_type *const schema_types[] = {
    &schema_event, &booking_type, &contact_type, &answer_type, &tracking_type, NULL};

const char *schema_kind_name(schema_kind kind)
{
    static const char *const names[] = {"string", "object", "array"};
    return names[kind];
}

/* Pushes {kind=, required=, nullable=, format=, values=, type=, items=, string_as_list=}. */
static void schema_push_field(lua_State *L, const schema_field *f)
{
    static const char *const formats[] = {NULL, "non-empty", "date-time"};
    int i;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, f->name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, schema_kind_name(f->kind));
    lua_setfield(L, -2, "kind");
    if (f->flags & (SCHEMA_REQUIRED | SCHEMA_STRICT_REQUIRED)) {
        lua_pushstring(L, (f->flags & SCHEMA_REQUIRED) ? "always" : "strict");
        lua_setfield(L, -2, "required");
    }
    lua_pushboolean(L, (f->flags & SCHEMA_NULLABLE) != 0);
    lua_setfield(L, -2, "nullable");
    lua_pushboolean(L, (f->flags & SCHEMA_STRING_AS_LIST) != 0);
    lua_setfield(L, -2, "string_as_list");
    if (formats[f->format]) {
        lua_pushstring(L, formats[f->format]);
        lua_setfield(L, -2, "format");
    }
    if (f->values) {
        lua_newtable(L);
        for (i = 0; f->values[i]; i++) {
            lua_pushstring(L, f->values[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setfield(L, -2, "values");
    }
    if (f->type) {
        lua_pushstring(L, f->type->name);
        lua_setfield(L, -2, "type");
    }
    if (f->items) {
        schema_push_field(L, f->items);
        lua_setfield(L, -2, "items");
    }
}

void schema_push_description(lua_State *L)
{
    const schema_type *const *t;
    size_t i;
    lua_newtable(L);
    for (t = schema_types; *t; t++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, (*t)->metatable);
        lua_setfield(L, -2, "metatable");
        lua_createtable(L, (int)(*t)->nfields, 0);
        for (i = 0; i < (*t)->nfields; i++) {
            schema_push_field(L, &(*t)->fields[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        lua_setfield(L, -2, "fields");
        lua_setfield(L, -2, (*t)->name);
    }
}
