/* The one-pass walk that turns a JSON document into Lua values. */
#ifndef JICOO_WALK_H
#define JICOO_WALK_H

#include "json.h"
#include "schema.h"

/* Reads the whole input and pushes its value: checked against `root` and its nested types, or
 * plain JSON when root is NULL. On JSON_ERROR, p->error says why and the stack is unspecified. */
int walk_document(json_parser *p, const schema_type *root);

#endif
