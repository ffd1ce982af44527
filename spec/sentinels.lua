-- A Redis Sentinel set on 127.0.0.1 for the specs: a master, a replica and three sentinels
-- (quorum 2), each a redis-server process of its own on a free port, each stopped by its pid.
-- A sentinel rewrites its configuration file: each has its own, in the set's folder. Small
-- down-after-milliseconds and failover-timeout make a failover take a few seconds.
local support = require "support"
local servers = require "servers"

local sentinels = {}

local quote = support.quote
local NAME = "jicoo"

local function sh(command)
  return support.run("unset LD_PRELOAD; " .. command)
end

local Set = {}
Set.__index = Set

-- redis-cli against a sentinel (i: 1, 2 or 3); its trimmed output.
function Set:sentinel_cli(i, args)
  local out = sh(quote(servers.redis_cli) .. " -h 127.0.0.1 -p " .. self.sentinels[i].port
    .. " " .. args .. " 2>&1")
  return ((out or ""):gsub("exit:%d+%s*$", ""):gsub("^%s+", ""):gsub("%s+$", ""))
end

-- The master's port as sentinel i names it, or nil.
function Set:master_port(i)
  local out = self:sentinel_cli(i or 1, "SENTINEL get-master-addr-by-name " .. NAME)
  return tonumber(out:match("\n(%d+)$"))
end

-- { { host =, port = }, ... } and the sentinel:// address of the three.
function Set:list()
  local list, parts = {}, {}
  for i, s in ipairs(self.sentinels) do
    list[i] = { host = "127.0.0.1", port = s.port }
    parts[i] = "127.0.0.1:" .. s.port
  end
  return list, "sentinel://" .. table.concat(parts, ",") .. "/" .. NAME
end

-- kill -9 of the master's process; the time it was sent (socket.gettime or os.time).
function Set:kill_master()
  sh("kill -9 " .. self.master.pid)
  self.master.pid = nil
end

function Set:stop()
  for _, s in ipairs(self.sentinels) do
    servers.stop_pid(s.pid)
  end
  for _, r in ipairs({ self.master, self.replica }) do
    if r then
      r:stop()
    end
  end
end

local function start_sentinel(dir, i, master_port)
  for _ = 1, 5 do
    local port = servers.free_port()
    local conf = dir .. "/sentinel" .. i .. ".conf"
    support.write(conf, table.concat({
      "port " .. port,
      "bind 127.0.0.1",
      "daemonize no",
      "dir " .. dir,
      "logfile " .. dir .. "/sentinel" .. i .. ".log",
      "sentinel monitor " .. NAME .. " 127.0.0.1 " .. master_port .. " 2",
      "sentinel down-after-milliseconds " .. NAME .. " 500",
      "sentinel failover-timeout " .. NAME .. " 3000",
      "sentinel parallel-syncs " .. NAME .. " 1",
    }, "\n") .. "\n")
    local out = sh(quote(servers.redis_server) .. " " .. quote(conf)
      .. " --sentinel >/dev/null 2>&1 & echo $!")
    local s = { port = port, pid = tonumber(out:match("^%s*(%d+)")) }
    local up = servers.wait_for(function()
      return sh(quote(servers.redis_cli) .. " -p " .. port .. " ping 2>&1"):match("PONG") ~= nil
        or not servers.is_alive(s.pid)
    end, 5)
    if up and servers.is_alive(s.pid) then
      return s
    end
    servers.stop_pid(s.pid)
  end
  return nil
end

-- The set started in dir (its own folders for each server); nil, why when a part would not
-- start or the sentinels did not find one another and the replica within 15 s.
function sentinels.start(dir)
  local set = setmetatable({ sentinels = {}, name = NAME }, Set)
  sh("mkdir -p " .. quote(dir .. "/master") .. " " .. quote(dir .. "/replica"))
  local log
  set.master, log = servers.redis(dir .. "/master")
  if not set.master then
    return nil, "master did not start: " .. tostring(log)
  end
  set.replica, log = servers.redis(dir .. "/replica",
    { args = { "--replicaof", "127.0.0.1", tostring(set.master.port) } })
  if not set.replica then
    set:stop()
    return nil, "replica did not start: " .. tostring(log)
  end
  for i = 1, 3 do
    set.sentinels[i] = start_sentinel(dir, i, set.master.port)
    if not set.sentinels[i] then
      set:stop()
      return nil, "sentinel " .. i .. " did not start"
    end
  end
  local ready = servers.wait_for(function()
    if not set.replica:cli("INFO replication"):find("master_link_status:up", 1, true) then
      return false
    end
    for i = 1, 3 do
      local info = set:sentinel_cli(i, "INFO sentinel")
      if not info:find("slaves=1,sentinels=3", 1, true) then
        return false
      end
    end
    return true
  end, 15)
  if not ready then
    local why = set:sentinel_cli(1, "INFO sentinel")
    set:stop()
    return nil, "the sentinels did not find one another and the replica: " .. why
  end
  return set
end

return sentinels
