/* The Lua layer's file system calls (files.c). */
#ifndef JICOO_FILES_H
#define JICOO_FILES_H

#include <lua.h>

/* Adds file_replace, file_list, file_mkdir, file_read, file_info and file_chmod to the module
 * table on top of the stack. */
void files_register(lua_State *L);

#endif
