-- A Redis Cluster on 127.0.0.1 for the specs: three masters, each a redis-server process of its
-- own on a free port (and a free cluster bus port), made one cluster by
-- `redis-cli --cluster create`, each stopped by its pid. A short cluster-node-timeout keeps a
-- node's failure quick to notice.
local support = require "support"
local servers = require "servers"

local clusters = {}

local quote = support.quote

local function sh(command)
  return support.run("unset LD_PRELOAD; " .. command)
end

local Set = {}
Set.__index = Set

-- { { host =, port = }, ... } and the cluster:// address of the three.
function Set:list()
  local list, parts = {}, {}
  for i, node in ipairs(self.nodes) do
    list[i] = { host = "127.0.0.1", port = node.port }
    parts[i] = "127.0.0.1:" .. node.port
  end
  return list, "cluster://" .. table.concat(parts, ",")
end

local function id(node)
  return node:cli("CLUSTER MYID")
end

-- The node (one of self.nodes) that serves a slot, as the first node's map says.
function Set:owner(slot)
  local out = self.nodes[1]:cli("CLUSTER SLOTS")
  -- redis-cli prints each range's first, last, then its master's ip, port and id, one per line
  local lines = {}
  for line in out:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  for i = 1, #lines - 3 do
    local first, last = tonumber(lines[i]), tonumber(lines[i + 1])
    if first and last and lines[i + 2] == "127.0.0.1" and first <= slot and slot <= last then
      local port = tonumber(lines[i + 3])
      for _, node in ipairs(self.nodes) do
        if node.port == port then
          return node
        end
      end
    end
  end
  return nil
end

-- Moves a slot from one node to another, as a resharding does: IMPORTING on the target,
-- MIGRATING on the source, then `between()` (the slot is moving: keys still on the source are
-- served there, others with ASK), the keys moved with MIGRATE, `moved()` (every key is on the
-- target and the source answers ASK), and the slot given to the target on every node.
function Set:migrate(slot, from, to, between, moved)
  local from_id, to_id = id(from), id(to)
  assert(to:cli("CLUSTER SETSLOT " .. slot .. " IMPORTING " .. from_id) == "OK")
  assert(from:cli("CLUSTER SETSLOT " .. slot .. " MIGRATING " .. to_id) == "OK")
  -- the slot is given to the target whatever the callbacks do, so that a failing one leaves a
  -- cluster the next spec can use
  local ok, err = pcall(function()
    if between then
      between()
    end
    while true do
      local keys = from:cli("CLUSTER GETKEYSINSLOT " .. slot .. " 1000")
      if keys == "" then
        break
      end
      local words = {}
      for key in keys:gmatch("[^\n]+") do
        words[#words + 1] = quote(key)
      end
      local out = from:cli("MIGRATE 127.0.0.1 " .. to.port .. ' "" 0 5000 KEYS '
        .. table.concat(words, " "))
      assert(out == "OK", out)
    end
    if moved then
      moved()
    end
  end)
  for _, node in ipairs({ to, from }) do
    node:cli("CLUSTER SETSLOT " .. slot .. " NODE " .. to_id)
  end
  for _, node in ipairs(self.nodes) do
    if node ~= to and node ~= from then
      node:cli("CLUSTER SETSLOT " .. slot .. " NODE " .. to_id)
    end
  end
  if not ok then
    error(err, 0)
  end
end

-- FLUSHALL on every node.
function Set:flush()
  for _, node in ipairs(self.nodes) do
    node:cli("FLUSHALL")
  end
end

function Set:stop()
  for _, node in ipairs(self.nodes) do
    node:stop()
  end
end

-- The cluster started in dir (a folder per node); nil, why when a node would not start or the
-- cluster was not ok on every node within 15 s.
function clusters.start(dir)
  local set = setmetatable({ nodes = {} }, Set)
  for i = 1, 3 do
    local node_dir = dir .. "/node" .. i
    sh("mkdir -p " .. quote(node_dir))
    local node, log = servers.redis(node_dir, { args = { "--cluster-enabled", "yes",
      "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
      "--cluster-port", tostring(servers.free_port()) } })
    if not node then
      set:stop()
      return nil, "node " .. i .. " did not start: " .. tostring(log)
    end
    set.nodes[i] = node
  end
  local addresses = {}
  for i, node in ipairs(set.nodes) do
    addresses[i] = "127.0.0.1:" .. node.port
  end
  local out = sh(quote(servers.redis_cli) .. " --cluster create " .. table.concat(addresses, " ")
    .. " --cluster-replicas 0 --cluster-yes 2>&1")
  if not (out or ""):find("All 16384 slots covered", 1, true) then
    set:stop()
    return nil, "redis-cli --cluster create failed: " .. tostring(out)
  end
  local ready = servers.wait_for(function()
    for _, node in ipairs(set.nodes) do
      local info = node:cli("CLUSTER INFO")
      if not (info:find("cluster_state:ok", 1, true)
          and info:find("cluster_known_nodes:3", 1, true)) then
        return false
      end
    end
    return true
  end, 15)
  if not ready then
    local why = set.nodes[1]:cli("CLUSTER INFO")
    set:stop()
    return nil, "the cluster was not ok within 15 s: " .. why
  end
  return set
end

return clusters
