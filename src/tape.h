/* The tape: what the core and LuaJIT's FFI (lua/jicoo/webhook/luajit.lua) share. In tape mode
 * the walk checks a delivery as parse does but writes where each value is into an array of
 * doubles (slots) instead of building Lua tables, and Lua code generated from core.schema builds
 * the tables from them.
 *
 * Both sides read the declarations in TAPE_DECLARATIONS: C compiles them below, and the core
 * hands their text to Lua (core.tape.cdef) for ffi.cdef. So a prototype or a slot number cannot
 * differ between the two. Hence the rules for what goes inside: plain C declarations that
 * LuaJIT's C parser takes (no preprocessor lines, only types it knows: int32_t, size_t, double),
 * and comments in this style only, which vanish before the text is taken.
 *
 * A value takes two slots:
 *   a string: (where it starts, counted from the start of the input; its length). A string
 *     with escapes is decoded into slots of its own and starts there (a distance that may be
 *     negative: the FFI adds it to the input's address);
 *   an object: (its first slot, 0); an array: (its first item's slot, how many items);
 *   an absent or null field: (0, JICOO_TAPE_NONE).
 * An object of type t (schema.h): one value per field, in t's order, then the pair (the first of
 * its keys that are not in t, how many). Such a key: (where it starts, its length), its value (a
 * string or null), the next one's slot. An array item: its value, then the next item's slot. The
 * last link's next slot is JICOO_TAPE_NONE. The Event is at slot 0. */
#ifndef JICOO_TAPE_H
#define JICOO_TAPE_H

#include <stddef.h>
#include <stdint.h>

#define TAPE_DECLARATIONS                                                                        \
    enum {                                                                                       \
        /* slots for one delivery: about 60, plus 12 for each answer and 3 for each line of an   \
           answer's content; a delivery that needs more gets a bigger tape */                    \
        JICOO_TAPE_CAPACITY = 8192,                                                              \
        JICOO_TAPE_FULL = -2,       /* parse's answer when the slots ran out */                  \
        JICOO_TAPE_VALUE = 2,       /* slots a value takes */                                    \
        JICOO_TAPE_LENGTH = 1,      /* where a value's second slot is: length, count or NONE */  \
        JICOO_TAPE_NONE = -1,       /* an absent value's second slot; the last link's next */    \
        JICOO_TAPE_ITEM_NEXT = 2,   /* an array item: its value, then the next item's slot */    \
        JICOO_TAPE_ITEM = 3,                                                                     \
        JICOO_TAPE_OTHER_VALUE = 2, /* a key not in the type: the key, its value, the next */    \
        JICOO_TAPE_OTHER_NEXT = 4,                                                               \
        JICOO_TAPE_OTHER = 5                                                                     \
    };                                                                                           \
    typedef struct jicoo_tape {                                                                  \
        /* parse without Lua: the delivery body[len] (body[len] is NUL, as in every Lua string)  \
           walked with the default limits at `level` (the index of one of                        \
           core.options.level.choices, from 0) into slots[capacity]. Returns how many keys       \
           outside the schema it kept (0 or more); JICOO_TAPE_FULL when the slots ran out       \
           first (the same walk into more of them may succeed); or -1 when the delivery is       \
           invalid or outside the tape (an unknown key holding a number, list or object; an      \
           escaped key): core.parse then reports or builds it. */                                \
        int (*parse)(const char *body, size_t len, int level, double *slots, int32_t capacity); \
    } jicoo_tape;

TAPE_DECLARATIONS

/* The declarations' text, for ffi.cdef. */
#define TAPE_TEXT_(...) #__VA_ARGS__
#define TAPE_TEXT(...) TAPE_TEXT_(__VA_ARGS__)

#endif
