/* The walk in tape mode (walk_tape, layout in tape.h), for LuaJIT's FFI: the operations
 * walk_body.h calls, writing numbered slots with no Lua state in reach. It covers the common
 * delivery and declines the rest (an unknown key holding a number, a list or an object, an
 * escaped key, any error); its caller then walks the input again with Lua (walk_lua.c), which
 * reports or builds it. A tape too small is told apart: its caller walks again into a bigger one.
 * Apart from the Lua mode because the two share only the control flow (walk_body.h) and the
 * checks (walk_check.c). */
#include <stdint.h>
#include <string.h>

#include "tape.h"
#include "walk.h"
#include "walk_check.h"

/* Each operation puts the value it reads in w->value, for its parent to store, or stores it. */

/* The most keys not in the type one object may have; more go to the Lua walk. */
#define WALK_TAPE_OTHER_KEYS 32

typedef struct walk_tape_list {
    int32_t first, last; /* the first and the last item's slots; JICOO_TAPE_NONE before */
} walk_tape_list;

static int walk_tape_value(walk_tape *w, const schema_field *f, const json_frame *frame);
static int walk_tape_string(walk_tape *w, const schema_field *f, const json_frame *frame);

/* A delivery outside the fast path; the Lua walk will handle it. */
static int walk_tape_decline(walk_tape *w)
{
    if (w->p.error.code == NULL)
        w->p.error.code = "decline";
    return JSON_ERROR;
}

/* n more slots, at the returned index, or -1 when the tape is full. */
static int32_t walk_tape_slots(walk_tape *w, int32_t n)
{
    int32_t at = w->used;
    if (n > w->capacity - at) {
        w->full = 1;
        return -1;
    }
    w->used += n;
    return at;
}

/* The value just read, as its parent stores it. */
static void walk_tape_put(walk_tape *w, double a, double b)
{
    w->value[0] = a;
    w->value[JICOO_TAPE_LENGTH] = b;
}

static int walk_tape_enter(walk_tape *w)
{
    return json_enter(&w->p);
}

/* A string with escapes, decoded into slots of its own. */
static int walk_tape_decoded(walk_tape *w, const json_string *s)
{
    int32_t at;
    if (s->len > (size_t)w->capacity * sizeof *w->slots) {
        w->full = 1;
        return walk_tape_decline(w);
    }
    if ((at = walk_tape_slots(w, (int32_t)((s->len + sizeof *w->slots - 1) / sizeof *w->slots))) < 0)
        return walk_tape_decline(w);
    w->decoded = (const char *)(w->slots + at);
    json_decode_into((char *)(w->slots + at), s);
    /* the distance between two objects, which the FFI adds back to the input's address */
    walk_tape_put(w, (double)(intptr_t)((uintptr_t)w->decoded - (uintptr_t)w->p.start),
                  (double)s->len);
    return 0;
}

static int walk_tape_put_string(walk_tape *w, const json_string *s, const char **text)
{
    if (s->has_escapes) {
        if (walk_tape_decoded(w, s))
            return JSON_ERROR;
        *text = w->decoded;
        return 0;
    }
    walk_tape_put(w, (double)(s->raw - w->p.start), (double)s->raw_len);
    *text = (const char *)s->raw;
    return 0;
}

static void walk_tape_put_null(walk_tape *w)
{
    walk_tape_put(w, 0, JICOO_TAPE_NONE);
}

static void walk_tape_list_begin(walk_tape *w, walk_tape_list *list)
{
    (void)w;
    list->first = list->last = JICOO_TAPE_NONE;
}

/* The item just read, linked after the list's last one. */
static int walk_tape_list_add(walk_tape *w, walk_tape_list *list, size_t n)
{
    int32_t at = walk_tape_slots(w, JICOO_TAPE_ITEM);
    (void)n;
    if (at < 0)
        return walk_tape_decline(w);
    w->slots[at] = w->value[0];
    w->slots[at + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    w->slots[at + JICOO_TAPE_ITEM_NEXT] = JICOO_TAPE_NONE;
    if (list->last >= 0)
        w->slots[list->last + JICOO_TAPE_ITEM_NEXT] = (double)at;
    else
        list->first = at;
    list->last = at;
    return 0;
}

static void walk_tape_list_end(walk_tape *w, walk_tape_list *list, size_t n)
{
    walk_tape_put(w, (double)list->first, (double)n);
}

/* The first slot of a new object of type t, all fields absent and no other keys; -1 (declined)
 * for plain JSON or when the tape is full. */
static int walk_tape_new_object(walk_tape *w, const schema_type *t)
{
    int32_t object, i, n;
    if (!t)
        return walk_tape_decline(w);
    n = JICOO_TAPE_VALUE * (int32_t)t->nfields;
    if ((object = walk_tape_slots(w, n + JICOO_TAPE_VALUE)) < 0)
        return walk_tape_decline(w);
    for (i = 0; i < n; i += JICOO_TAPE_VALUE) {
        w->slots[object + i] = 0;
        w->slots[object + i + JICOO_TAPE_LENGTH] = JICOO_TAPE_NONE;
    }
    w->slots[object + n] = JICOO_TAPE_NONE; /* the first other key */
    w->slots[object + n + JICOO_TAPE_LENGTH] = 0;
    return object;
}

/* An escaped key goes to the Lua walk, which decodes it. */
static int walk_tape_escaped_key(walk_tape *w, const schema_type *t, const json_string *key,
                                 int *field)
{
    (void)t, (void)key, (void)field;
    return walk_tape_decline(w);
}

/* A key that is not one of t's fields, kept in the object's chain of other keys (its value a
 * string or null). A repeated one goes to the Lua walk, which reports it. */
static int walk_tape_other_key(walk_tape *w, const schema_type *t, const json_string *key,
                               const json_frame *child, int object)
{
    double *chain = w->slots + object + JICOO_TAPE_VALUE * (int32_t)t->nfields;
    int32_t other, at;
    if (chain[JICOO_TAPE_LENGTH] == WALK_TAPE_OTHER_KEYS)
        return walk_tape_decline(w);
    for (other = (int32_t)chain[0]; other >= 0;
         other = (int32_t)w->slots[other + JICOO_TAPE_OTHER_NEXT])
        if (w->slots[other + JICOO_TAPE_LENGTH] == (double)key->raw_len &&
            memcmp(w->p.start + (size_t)w->slots[other], key->raw, key->raw_len) == 0)
            return walk_tape_decline(w);
    if (walk_tape_value(w, NULL, child) || (at = walk_tape_slots(w, JICOO_TAPE_OTHER)) < 0)
        return walk_tape_decline(w);
    w->slots[at] = (double)(key->raw - w->p.start);
    w->slots[at + JICOO_TAPE_LENGTH] = (double)key->raw_len;
    w->slots[at + JICOO_TAPE_OTHER_VALUE] = w->value[0];
    w->slots[at + JICOO_TAPE_OTHER_VALUE + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    w->slots[at + JICOO_TAPE_OTHER_NEXT] = chain[0];
    chain[0] = (double)at;
    chain[JICOO_TAPE_LENGTH]++;
    w->other_keys++;
    return 0;
}

/* The value of t's field number `field`, stored in its two slots of the object at `object`. */
static int walk_tape_field(walk_tape *w, const schema_type *t, int field, const json_frame *child,
                           int object)
{
    int32_t at = object + JICOO_TAPE_VALUE * field;
    if (walk_tape_value(w, &t->fields[field], child))
        return JSON_ERROR;
    w->slots[at] = w->value[0];
    w->slots[at + JICOO_TAPE_LENGTH] = w->value[JICOO_TAPE_LENGTH];
    return 0;
}

static void walk_tape_end_object(walk_tape *w, const schema_type *t, int object)
{
    (void)t;
    walk_tape_put(w, object, 0);
}

/* The value of a key not in the type: a string or null; anything else is declined. */
static int walk_tape_any(walk_tape *w, const json_frame *frame)
{
    if (*w->p.cur == '"')
        return walk_tape_string(w, NULL, frame);
    if (*w->p.cur != 'n' || json_literal(&w->p) != JSON_LITERAL_NULL)
        return walk_tape_decline(w);
    walk_tape_put_null(w);
    return 0;
}

#define WALK(name) walk_tape_##name
#define WALK_STATE walk_tape
#define WALK_LIST walk_tape_list
#include "walk_body.h"
#undef WALK
#undef WALK_STATE
#undef WALK_LIST

int walk_tape_document(walk_tape *w, const schema_type *root)
{
    w->p.record_path = NULL;
    w->used = 0;
    w->full = 0;
    w->other_keys = 0;
    return walk_tape_root(w, root);
}
