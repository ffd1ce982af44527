/* The user a process acts as (identity.c). */
#ifndef JICOO_IDENTITY_H
#define JICOO_IDENTITY_H

#include <lua.h>

/* Adds process_user and switch_user to the module table on top of the stack. */
void identity_register(lua_State *L);

#endif
