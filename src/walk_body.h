/* The walk's control flow, written once and compiled twice: by walk_lua.c building Lua values,
 * by walk_tape.c writing the tape. So both check a delivery with the same code, and the tape
 * cannot accept what the Lua walk refuses unless a mode's own operation does.
 *
 * Not a header (no include guard, on purpose): each of the two defines, before its inclusion,
 *   WALK(name)  the mode's name for a function (walk_lua_value, walk_tape_value, ...);
 *   WALK_STATE  its state (walk_lua, walk_tape), WALK_LIST what it keeps while reading an array;
 *   the mode's operations, which these functions call: enter, put_string, put_null, list_begin,
 *   list_add, list_end, new_object, escaped_key, other_key, field, end_object and any. */

/* A string at p->cur, checked against field f (NULL: any string). */
static int WALK(string)(WALK_STATE *w, const schema_field *f, const json_frame *frame)
{
    json_parser *p = &w->p;
    const unsigned char *at = p->cur;
    const char *text;
    json_string s;
    if (json_scan_string(p, &s, frame))
        return JSON_ERROR;
    if (s.len > p->limits.max_string)
        return walk_too_long(p, at, s.len);
    if (WALK(put_string)(w, &s, &text))
        return JSON_ERROR;
    if (f && (f->format != SCHEMA_TEXT || f->values))
        return walk_check_text(p, f, frame, at, text, s.len);
    return 0;
}

/* An array at p->cur; `item` describes each item (NULL: any JSON). */
static int WALK(array)(WALK_STATE *w, const schema_field *item, const json_frame *frame)
{
    json_parser *p = &w->p;
    WALK_LIST list;
    size_t n = 0;
    json_frame child;

    if (WALK(enter)(w))
        return JSON_ERROR;
    WALK(list_begin)(w, &list);
    child.parent = frame;
    child.key = NULL;
    p->cur++;
    json_skip_space(p);
    if (*p->cur != ']') {
        for (;;) {
            if (n == p->limits.max_items)
                return json_fail(p, "limit", p->cur, 0, NULL, NULL,
                                 "an array of more than max_items (%zu) items", n);
            child.index = n++;
            if (WALK(value)(w, item, &child) || WALK(list_add)(w, &list, n))
                return JSON_ERROR;
            json_skip_space(p);
            if (*p->cur == ',') {
                p->cur++;
                json_skip_space(p);
                continue;
            }
            if (*p->cur == ']')
                break;
            return json_unexpected(p, "',' or ']'");
        }
    }
    p->cur++;
    WALK(list_end)(w, &list, n);
    json_leave(p);
    return 0;
}

/* An object at p->cur, of type t (NULL: plain JSON). */
static int WALK(object)(WALK_STATE *w, const schema_type *t, const json_frame *frame)
{
    json_parser *p = &w->p;
    int object;
    uint32_t present = 0;
    size_t nkeys = 0, guess = 0;
    size_t max_key = p->limits.max_key < p->limits.max_string ? p->limits.max_key
                                                               : p->limits.max_string;
    json_frame child;
    json_string key;
    const schema_field *missing;

    if (WALK(enter)(w))
        return JSON_ERROR;
    if ((object = WALK(new_object)(w, t)) < 0)
        return JSON_ERROR;
    child.parent = frame;
    child.index = 0;
    p->cur++;
    json_skip_space(p);
    if (*p->cur != '}') {
        for (;;) {
            int field;
            if (*p->cur != '"')
                return json_unexpected(p, "a key in double quotes");
            child.key = p->cur;
            field = t ? walk_match_key(t, p->cur, p->end, guess) : -1;
            if (field >= 0) {
                if (t->fields[field].name_len > max_key)
                    return walk_key_too_long(p, child.key, t->fields[field].name_len);
                p->cur += t->fields[field].name_len + 2;
            } else {
                if (json_scan_string(p, &key, frame))
                    return JSON_ERROR;
                if (key.len > max_key)
                    return walk_key_too_long(p, child.key, key.len);
                if (t && key.has_escapes && WALK(escaped_key)(w, t, &key, &field))
                    return JSON_ERROR;
            }
            if (++nkeys > p->limits.max_keys)
                return json_fail(p, "limit", child.key, 0, NULL, NULL,
                                 "an object of more than max_keys (%zu) keys", p->limits.max_keys);
            json_skip_space(p);
            if (*p->cur != ':')
                return json_unexpected(p, "':'");
            p->cur++;
            json_skip_space(p);

            if (field < 0) {
                if (t && p->unknown_keys == JSON_REJECT)
                    return json_fail(p, "unknown_key", child.key, 1, &child, NULL,
                                     "the key is not part of %s", t->name);
                if (WALK(other_key)(w, t, &key, &child, object))
                    return JSON_ERROR;
            } else {
                if (present & ((uint32_t)1 << field))
                    return json_fail(p, "duplicate", child.key, 1, &child, NULL,
                                     "the key appears twice");
                present |= (uint32_t)1 << field;
                guess = (size_t)field + 1;
                if (WALK(field)(w, t, field, &child, object))
                    return JSON_ERROR;
            }

            json_skip_space(p);
            if (*p->cur == ',') {
                p->cur++;
                json_skip_space(p);
                continue;
            }
            if (*p->cur == '}')
                break;
            return json_unexpected(p, "',' or '}'");
        }
    }
    if (t && (missing = walk_missing(p, t, present)) != NULL)
        return json_fail(p, "missing", p->cur, 1, frame, missing->name,
                         "the required key \"%s\" is absent", missing->name);
    p->cur++;
    json_leave(p);
    WALK(end_object)(w, t, object);
    return 0;
}

/* The lenient level's reading of a lone string where a list of strings belongs. */
static int WALK(string_as_list)(WALK_STATE *w, const schema_field *f, const json_frame *frame)
{
    WALK_LIST list;
    WALK(list_begin)(w, &list);
    if (WALK(string)(w, f->items, frame) || WALK(list_add)(w, &list, 1))
        return JSON_ERROR;
    WALK(list_end)(w, &list, 1);
    return 0;
}

/* The value at p->cur, as field f says (f NULL: any JSON). Puts exactly one value. */
static int WALK(value)(WALK_STATE *w, const schema_field *f, const json_frame *frame)
{
    json_parser *p = &w->p;
    const char *got;
    if (++p->values > p->limits.max_values)
        return json_fail(p, "limit", p->cur, 0, NULL, NULL, "more than max_values (%zu) values",
                         p->limits.max_values);
    if (!f)
        return WALK(any)(w, frame);
    switch (f->kind) {
    case SCHEMA_STRING:
        if (*p->cur == '"')
            return WALK(string)(w, f, frame);
        break;
    case SCHEMA_OBJECT:
        if (*p->cur == '{')
            return WALK(object)(w, f->type, frame);
        break;
    case SCHEMA_ARRAY:
        if (*p->cur == '[')
            return WALK(array)(w, f->items, frame);
        if (*p->cur == '"' && (f->flags & SCHEMA_STRING_AS_LIST) && !p->strict)
            return WALK(string_as_list)(w, f, frame);
        break;
    }
    got = json_type_name(p);
    if (!got)
        return json_unexpected(p, "a value");
    if (*p->cur == 'n' && (f->flags & SCHEMA_NULLABLE)) {
        p->cur += 4;
        WALK(put_null)(w);
        return 0;
    }
    return json_fail(p, "type", p->cur, 1, frame, NULL, "expected %s%s, got %s",
                     schema_kind_name(f->kind), (f->flags & SCHEMA_NULLABLE) ? " or null" : "", got);
}

/* The whole input (at most max_size bytes): an object of type root, or any JSON when root is
 * NULL. */
static int WALK(root)(WALK_STATE *w, const schema_type *root)
{
    json_parser *p = &w->p;
    size_t len = (size_t)(p->end - p->start);
    const char *got;
    if (len > p->limits.max_size)
        return json_fail(p, "limit", p->start + p->limits.max_size, 0, NULL, NULL,
                         "the input is %zu bytes, over max_size (%zu)", len, p->limits.max_size);
    json_skip_space(p);
    if (root) {
        if (*p->cur != '{') {
            got = json_type_name(p);
            if (!got)
                return json_unexpected(p, "a JSON object");
            return json_fail(p, "type", p->cur, 1, NULL, NULL, "expected object, got %s", got);
        }
        p->values++;
        if (WALK(object)(w, root, NULL))
            return JSON_ERROR;
    } else if (WALK(value)(w, NULL, NULL)) {
        return JSON_ERROR;
    }
    json_skip_space(p);
    if (p->cur != p->end)
        return json_unexpected(p, "the end of the input");
    return 0;
}
