/* A TLS peer certificate's names against a host (x509.c). */
#ifndef JICOO_X509_H
#define JICOO_X509_H

#include <lua.h>

/* Adds x509_check_host to the module table on top of the stack. */
void x509_register(lua_State *L);

#endif
