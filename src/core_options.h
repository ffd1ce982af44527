/* The options of jicoo.webhook.core's calls (core_options.c): the settings they come to, and
 * their one reader, for the entry points (core.c). */
#ifndef JICOO_CORE_OPTIONS_H
#define JICOO_CORE_OPTIONS_H

#include "json.h"

/* The calls that take options, as bits (their names in core_options.c, in the bits' order). */
enum {
    CORE_DECODE = 1,
    CORE_PARSE = 2,
    CORE_VERIFY = 4,
    CORE_CONSTRUCT = 8,
    CORE_JSON = CORE_DECODE | CORE_PARSE | CORE_CONSTRUCT, /* the calls that read JSON */
    CORE_SCHEMA = CORE_PARSE | CORE_CONSTRUCT,             /* ... that check the Jicoo contract */
    CORE_SIGNED = CORE_VERIFY | CORE_CONSTRUCT             /* ... that check a signature */
};

/* What the options of one call come to: the defaults, then what the caller set. */
typedef struct core_settings {
    json_limits limits;
    int level;        /* an index into core_levels */
    int unknown_keys; /* an index into core_unknown_keys, which is json_unknown_keys' order */
    double tolerance; /* seconds */
    double now;       /* Unix seconds; NaN: the system clock */
    int null;         /* nothing: the call reads null (any Lua value) from the table itself */
} core_settings;

enum { CORE_LENIENT, CORE_STRICT };

/* Every option at its default. */
void core_default_settings(core_settings *s);

/* The options table at `arg` (nil or absent: none) of `call`, into s over the defaults. An
 * option the call does not take, or a bad value, raises. */
void core_read_options(lua_State *L, int arg, unsigned call, core_settings *s);

/* check_options(call, opts): raises what `call` raises on opts; true when it would take them. */
int core_check_options(lua_State *L);

/* Pushes core.options, then core.limits. */
void core_push_options(lua_State *L);

#endif
