-- A LuaRocks configuration for installing into LuaJIT (OpenResty's Lua) rather than Lua 5.1:
--   LUAROCKS_CONFIG=rockspec/luajit.lua luarocks --lua-version 5.1 make rockspec/jicoo-webhook-scm-1.rockspec
-- builds the C core against LuaJIT's headers and makes the jicoo-webhook command run luajit.
lua_interpreter = "luajit"
variables = {
  LUA_INCDIR = "/usr/include/luajit-2.1",
  LUA_BINDIR = "/usr/bin",
}
