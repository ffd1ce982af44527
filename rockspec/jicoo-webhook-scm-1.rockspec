rockspec_format = "3.0"
package = "jicoo-webhook"
version = "scm-1"
-- There is no published repository or archive: the source is the checkout this rockspec sits in.
-- `luarocks make rockspec/jicoo-webhook-scm-1.rockspec`, run from the checkout's root, builds
-- the current directory and never fetches, so the URL names that directory; `luarocks build`
-- and `luarocks pack`, which would fetch it, do not apply.
source = {
  url = ".",
}
description = {
  summary = "Verify, parse and dispatch Jicoo webhook deliveries: a C core with a Lua layer",
  detailed = [[
Receives the webhook deliveries Jicoo (a scheduling service) sends when a meeting is booked,
rescheduled or cancelled. A C core checks the Jicoo-Webhook-Signature header (HMAC-SHA256 with
OpenSSL 3, secret rotation, a timestamp tolerance) and parses and validates each body in one
pass (strict RFC 8259 JSON, strict UTF-8, RFC 3339 date-times, limits on size, depth, strings,
keys and items) into typed Lua tables, naming the reason, byte offset and RFC 6901 path of every
rejection. The Lua layer routes each delivery to per-event handler scripts and journals it (in
memory, in files or in Redis) so that every handler succeeds exactly once or the delivery ends
as a dead letter, retrying failures in between; an OpenResty adapter serves it from nginx, and
the jicoo-webhook command checks, signs, verifies and replays deliveries and lists, shows,
retries or drops the journal's failed and dead ones. Lua 5.1 to 5.4, LuaJIT and OpenResty.]],
  license = "MIT",
  labels = { "webhook", "jicoo", "json", "hmac", "openresty", "nginx", "redis" },
}
dependencies = {
  "lua >= 5.1",
}
external_dependencies = {
  OPENSSL = { header = "openssl/core_names.h", library = "crypto" },  -- OpenSSL 3 (EVP_MAC)
  SQLITE = { header = "sqlite3.h", library = "sqlite3" },              -- SQLite 3.37+ (the journal's database)
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
    SQLite3_ROOT = "$(SQLITE_DIR)",  -- where CMake's FindSQLite3 looks first
  },
  install = {
    bin = { ["jicoo-webhook"] = "lua/bin/jicoo-webhook" },
  },
}
