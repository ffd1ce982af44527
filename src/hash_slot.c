/* The hash slot Redis Cluster gives a key: CRC16 (XMODEM: polynomial 0x1021, initial value 0,
 * no reflection) of the key modulo 16384, where a key holding "{...}" with at least one byte
 * between the first '{' and the first '}' after it is hashed by those bytes alone (its hash
 * tag), so that keys sharing a tag share a slot. The Lua client routes each command by it
 * (lua/jicoo/net/redis_cluster.lua). */
#include <stddef.h>
#include <string.h>

#include <lauxlib.h>

#include "compat.h"
#include "hash_slot.h"

#define HASH_SLOTS 16384

static unsigned crc16_xmodem(const unsigned char *p, size_t n)
{
    unsigned crc = 0;
    size_t i;
    int bit;
    for (i = 0; i < n; i++) {
        crc ^= (unsigned)p[i] << 8;
        for (bit = 0; bit < 8; bit++)
            crc = (crc & 0x8000u) ? ((crc << 1) ^ 0x1021u) & 0xFFFFu : (crc << 1) & 0xFFFFu;
    }
    return crc;
}

/* redis_slot(key): the key's slot, 0 to 16383. */
static int hash_slot_redis_slot(lua_State *L)
{
    size_t n;
    const unsigned char *key = (const unsigned char *)luaL_checklstring(L, 1, &n);
    const unsigned char *open = memchr(key, '{', n);
    if (open) {
        size_t rest = n - (size_t)(open - key) - 1;
        const unsigned char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            n = (size_t)(close - key);
        }
    }
    lua_pushinteger(L, (lua_Integer)(crc16_xmodem(key, n) % HASH_SLOTS));
    return 1;
}

void hash_slot_register(lua_State *L)
{
    lua_pushcfunction(L, hash_slot_redis_slot);
    lua_setfield(L, -2, "redis_slot");
}
