/* The one-pass walk: reads a JSON document and checks each value against its schema field as it
 * goes, building Lua values (walk_lua) or, for LuaJIT's FFI, writing the tape (walk_tape,
 * layout in tape.h). One walk (walk_body.h), compiled for each (walk_lua.c, walk_tape.c). */
#ifndef JICOO_WALK_H
#define JICOO_WALK_H

#include "json.h"
#include "schema.h"

/* A walk that builds Lua values on L. Set p up, L and the indexes; the walk does the rest. */
typedef struct walk_lua {
    json_parser p;   /* first: the tokenizer's path callback gets from it back to the rest */
    lua_State *L;
    int null_index;  /* stack index of what a JSON null becomes; 0 = nil */
    int cache_index; /* the interned keys and metatables (an upvalue) */
    int path_index;  /* after an error: stack index of its RFC 6901 pointer; 0 when it has none */
} walk_lua;

/* Reads the whole input and pushes its value: checked against `root` and its nested types, or
 * plain JSON when root is NULL. On JSON_ERROR, p.error and path_index say why and the stack
 * above the error's path is unspecified. */
int walk_lua_document(walk_lua *w, const schema_type *root);

/* A walk that writes the tape into slots[capacity]. Set p up, slots and capacity. */
typedef struct walk_tape {
    json_parser p;
    double *slots;
    int32_t used, capacity;
    int full;            /* whether the walk stopped because the slots ran out */
    double value[2];     /* the value just read, as its parent stores it */
    const char *decoded; /* the bytes of the last string decoded into the slots */
    int32_t other_keys;  /* how many keys outside the schema were kept */
} walk_tape;

/* Reads the whole input into the tape, the root object (of type root) at slot 0. JSON_ERROR
 * when the input is invalid or outside the tape (see tape.h); p.error says only its code and
 * offset (code "decline" when it is outside). */
int walk_tape_document(walk_tape *w, const schema_type *root);

#endif
