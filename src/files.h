/* The file journal's system calls (files.c). */
#ifndef JICOO_FILES_H
#define JICOO_FILES_H

#include <lua.h>

/* Adds file_replace, file_remove, file_list, file_mkdir and file_lock to the module table on
 * top of the stack. */
void files_register(lua_State *L);

#endif
