-- The journal's backends held to one contract (spec/journal_contract.lua): the memory journal,
-- the SQLite journal and, where redis-server and LuaSocket are installed, the Redis journal
-- against a real redis-server on 127.0.0.1. What one backend has and the others do not: journal_sqlite_spec.lua and journal_redis_spec.lua.
local journal = require "jicoo.webhook.journal"
local shared = require "journal_shared"
local contract = require "journal_contract"

local temp_dir, remove_dir = shared.temp_dir, shared.remove_dir

-- The backends: name, make(dir) -> journal, and what sets them apart.
local backends = {
  { name = "memory", make = function() return journal.memory() end, durable = false },
  { name = "sqlite", make = function(dir) return journal.sqlite({ dir = dir .. "/journal" }) end,
    durable = true, keeps_done = true },
}

local redis_server, redis_dir
do
  local has_socket = pcall(require, "socket")
  local ok_servers, servers = pcall(require, "servers")
  if has_socket and ok_servers and servers.redis_server and servers.redis_cli then
    table.insert(backends, { name = "redis", durable = true, keeps_done = true,
      make = function()
        if not redis_server then
          redis_dir = temp_dir()
          redis_server = assert(servers.redis(redis_dir))
        end
        redis_server:cli("flushall")
        return journal.redis({ host = "127.0.0.1", port = redis_server.port })
      end })
  end
end

teardown(function()
  if redis_server then
    redis_server:stop()
    remove_dir(redis_dir)
  end
end)

for _, backend in ipairs(backends) do
  contract(backend)
end
