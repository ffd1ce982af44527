#include "signature.h"

void signature_register(lua_State *L)
{
    (void)L;
}
