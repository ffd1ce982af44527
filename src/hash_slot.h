/* The Redis Cluster hash slot of a key (hash_slot.c). */
#ifndef JICOO_HASH_SLOT_H
#define JICOO_HASH_SLOT_H

#include <lua.h>

/* Adds redis_slot to the module table on top of the stack. */
void hash_slot_register(lua_State *L);

#endif
