rockspec_format = "3.0"
package = "jicoo-webhook"
version = "scm-1"
source = {
  url = "git+file:///jicoo-webhook",
}
description = {
  summary = "Verify, parse and dispatch Jicoo webhook deliveries: a C core with a Lua layer",
  detailed = [[
A C core verifies the Jicoo-Webhook-Signature header with OpenSSL, parses and validates each
delivery in one pass into typed Lua tables, and a Lua layer dispatches it to per-event handler
scripts exactly once. Runs on Lua 5.1 to 5.4, LuaJIT and OpenResty.]],
  license = "MIT",
  labels = { "webhook", "json", "openresty", "hmac" },
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  OPENSSL = { header = "openssl/core_names.h", library = "crypto" },  -- OpenSSL 3 (EVP_MAC)
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCLUDE_DIR = "$(LUA_INCDIR)",
    INSTALL_CMOD = "$(LIBDIR)",
    INSTALL_LMOD = "$(LUADIR)",
    OPENSSL_ROOT_DIR = "$(OPENSSL_DIR)",
  },
  install = {
    bin = { ["jicoo-webhook"] = "lua/bin/jicoo-webhook" },
  },
}
