-- What jicoo.net.redis needs to talk to a Redis Cluster: the options checked, a command's hash
-- slot, the slot map (CLUSTER SLOTS, a reply from the network, so checked as closely as any),
-- a client per node, and which replies redirect a command (MOVED, ASK, TRYAGAIN).
--
-- The client (net/redis.lua) sends each request to the node the map names for its slot, through
-- that node's own client (new_client, with the cluster's password and timeouts). A MOVED sends
-- the command again to the node it names and has the map read again before the next request; an
-- ASK sends it again, after ASKING, to the node it names, the map unchanged (the slot is moving
-- there, key by key); a TRYAGAIN (keys of one command split by a move) sends it again after a
-- pause. Only the commands redirected are sent again: a redirect says the command was not run.
-- A node that cannot be reached has the map read again first thing on the next request; the
-- request is sent once more, to the node the new map names, when nothing of it was sent.
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local string_match = string.match
local string_upper = string.upper
local table_sort = table.sort
local math_floor = math.floor
local table_concat = table.concat

local core = require "jicoo.webhook.core"
local address = require "jicoo.net.redis_address"
local resp = require "jicoo.net.resp"
local socket = require "jicoo.net.socket"

local _M = {}

local SLOTS = 16384
local MAX_NODES = 256   -- nodes one client keeps a connection setup for

_M.slot = core.redis_slot   -- a key's slot, by its hash tag when it holds one

-- Raises (at `level` for error()) unless the cluster options hang together: a non-empty list of
-- { host =, port = }, database 0, and no other way of naming a server beside it.
function _M.check(o, who, level)
  if o.cluster == nil then
    return
  end
  address.check_list(o, "cluster", who, level + 1)
  if o.path ~= nil or o.sentinels ~= nil then
    error(who .. ": option 'cluster' and option '" .. (o.path and "path" or "sentinels")
      .. "' name two servers: give one", level + 1)
  end
  if o.db ~= 0 then
    error(who .. ": option 'db': a Redis Cluster has database 0 only", level + 1)
  end
end

-- The cluster's state for a client made from options o: the seed nodes, the node clients made
-- so far (by address), the slot map once read, and the count of redirects received by kind.
function _M.new(o, new_client)
  local seeds = {}
  for i, s in ipairs(o.cluster) do
    seeds[i] = s.host .. ":" .. s.port
  end
  local node_options = {
    username = o.username, password = o.password,
    connect_timeout = o.connect_timeout, send_timeout = o.send_timeout,
    read_timeout = o.read_timeout, max_reply = o.max_reply,
    pool_size = o.pool_size, keepalive_timeout = o.keepalive_timeout,
  }
  return {
    seeds = seeds, seed_hosts = o.cluster,
    nodes = {}, node_count = 0, node_options = node_options, new_client = new_client,
    ranges = nil,   -- sorted { first, last, address } once the map is read
    stale = true,   -- read the map before the next request
    redirects = { moved = 0, ask = 0, tryagain = 0 },
  }
end

-- The client of the node at host:port, made on first use; nil, err past MAX_NODES.
function _M.node(state, host, port)
  local key = host .. ":" .. port
  local client = state.nodes[key]
  if client then
    return client
  end
  if state.node_count >= MAX_NODES then
    return nil, "redis cluster: more than " .. MAX_NODES .. " nodes named"
  end
  local opts = { host = host, port = port }
  for name, value in pairs(state.node_options) do
    opts[name] = value
  end
  client = state.new_client(opts)
  state.nodes[key], state.node_count = client, state.node_count + 1
  return client
end

-- A CLUSTER SLOTS reply read as sorted, disjoint { first, last, host, port } ranges, or nil, why.
-- `asked` is the host of the node that answered (an empty host means that one).
function _M.ranges_of(reply, asked)
  if type(reply) ~= "table" or #reply > SLOTS then
    return nil, "CLUSTER SLOTS answered something that is not a list of slot ranges"
  end
  local ranges = {}
  for i, entry in ipairs(reply) do
    if type(entry) ~= "table" then
      return nil, "CLUSTER SLOTS: entry " .. i .. " is not a slot range and its master"
    end
    local first, last, master = entry[1], entry[2], entry[3]
    if type(first) ~= "number" or type(last) ~= "number"
        or first % 1 ~= 0 or last % 1 ~= 0 or first < 0 or first > last or last >= SLOTS
        or type(master) ~= "table" then
      return nil, "CLUSTER SLOTS: entry " .. i .. " is not a slot range and its master"
    end
    local host, port = address.from_reply(master[1], master[2], asked)
    if not host then
      return nil, "CLUSTER SLOTS: entry " .. i .. " names no host and port"
    end
    ranges[i] = { first, last, host, port }
  end
  table_sort(ranges, function(a, b) return a[1] < b[1] end)
  for i = 2, #ranges do
    if ranges[i][1] <= ranges[i - 1][2] then
      return nil, "CLUSTER SLOTS: slot " .. ranges[i][1] .. " is in two ranges"
    end
  end
  return ranges
end

-- Reads the slot map again, asking the nodes of the last one and then the seeds in turn:
-- true, or nil, err naming every node asked and why, code (the last one's).
function _M.refresh(state)
  local asked, errors, code = {}, {}, nil
  local candidates = {}
  for _, range in ipairs(state.ranges or {}) do
    candidates[#candidates + 1] = { range[3], range[4] }
  end
  for _, s in ipairs(state.seed_hosts) do
    candidates[#candidates + 1] = { s.host, s.port }
  end
  for _, c in ipairs(candidates) do
    local name = c[1] .. ":" .. c[2]
    if not asked[name] then
      asked[name] = true
      local client, reply, err = _M.node(state, c[1], c[2])
      if client then
        reply, err, code = client:call("CLUSTER", "SLOTS")
      end
      if reply ~= nil then
        reply, err = _M.ranges_of(reply, c[1])
        if reply then
          state.ranges, state.stale = reply, false
          return true
        end
        code = "protocol"
        client:close()
      end
      errors[#errors + 1] = (code == "reply" or code == "protocol")
        and ("redis " .. name .. ": " .. tostring(err)) or tostring(err)
    end
  end
  return nil, "redis cluster: no node gave the slot map (" .. table_concat(errors, "; ") .. ")",
    code
end

-- The client of the node serving `slot` (any node's when slot is nil), the map read first when
-- it is stale; or nil, err, code.
function _M.node_for(state, slot)
  if state.stale then
    local ok, err, code = _M.refresh(state)
    if not ok then
      return nil, err, code
    end
  end
  local ranges = state.ranges
  if slot == nil then
    local range = ranges[1]
    if not range then
      return nil, "redis cluster: the slot map is empty", "protocol"
    end
    return _M.node(state, range[3], range[4])
  end
  local lo, hi = 1, #ranges
  while lo <= hi do
    local mid = math_floor((lo + hi) / 2)
    local range = ranges[mid]
    if slot < range[1] then
      hi = mid - 1
    elseif slot > range[2] then
      lo = mid + 1
    else
      return _M.node(state, range[3], range[4])
    end
  end
  state.stale = true
  return nil, "redis cluster: no node serves slot " .. slot .. " (the cluster is down or"
    .. " being set up)", "refused"
end

-- Commands that name no key: they go to any node.
local KEYLESS = {
  PING = true, ECHO = true, TIME = true, INFO = true, ROLE = true, SCRIPT = true, WAIT = true,
  CLUSTER = true, DBSIZE = true, COMMAND = true, HELLO = true, CONFIG = true, SELECT = true,
}

-- The slot of a command (a list of n words), by its key: its second word, or EVAL's and
-- EVALSHA's first key; nil for a command that names none.
function _M.slot_of(command, n)
  local name = type(command[1]) == "string" and string_upper(command[1]) or ""
  if name == "EVAL" or name == "EVALSHA" then
    if n >= 4 and tonumber(command[3]) and tonumber(command[3]) > 0 then
      return _M.slot(tostring(command[4]))
    end
    return nil
  end
  if KEYLESS[name] or n < 2 then
    return nil
  end
  return _M.slot(tostring(command[2]))
end

-- Whether a reply redirects its command: "moved" or "ask" with the host and port to send it to
-- (an empty host: the node that answered, `asked`), or "tryagain"; nil for any other reply.
function _M.redirect(reply, asked)
  local err = type(reply) == "table" and reply.err
  if type(err) ~= "string" then
    return nil
  end
  local kind, host, port = string_match(err, "^(%u+) %d+ (.*):(%d+)$")
  if kind == "MOVED" or kind == "ASK" then
    host, port = address.from_reply(host, port, asked)
    if host then
      return kind == "MOVED" and "moved" or "ask", host, port
    end
    return nil
  end
  if string_match(err, "^TRYAGAIN") then
    return "tryagain"
  end
  return nil
end

local ASKING = resp.encode({ "ASKING" }, 1)
local ROUNDS = 8   -- sends of one request in a cluster, redirects followed included

-- parts (encoded commands) sent to the node serving `slot`, and each one redirected sent again
-- where its redirect says, at most ROUNDS sends in all; a command still redirected then has its
-- redirect as its reply. The whole request goes once more, after the slot map is read again,
-- when no connection to the node could be made. send(node, request, count) is the client's
-- exchange with one server: replies, or nil, err, code, and true when nothing was sent.
-- The list of replies, or nil, err, code.
function _M.exchange(state, parts, slot, send)
  -- todo: { part's index, how to send it (nil: by the map, "ask": after ASKING, "node"), host,
  -- port, its last reply, whether to pause first (a TRYAGAIN) }
  local replies, todo = {}, {}
  for i = 1, #parts do
    todo[i] = { i }
  end
  for round = 1, ROUNDS do
    local first = todo[1]
    local kind = first[2]
    local node, err, code
    if kind == nil then
      node, err, code = _M.node_for(state, slot)
    else
      node, err = _M.node(state, first[3], first[4])
      code = "protocol"
    end
    if not node then
      return nil, err, code
    end
    local batch, rest, request = {}, {}, {}
    for _, item in ipairs(todo) do
      if item[2] == kind and item[3] == first[3] and item[4] == first[4]
        and item[6] == first[6] then
        batch[#batch + 1] = item
        if kind == "ask" then
          request[#request + 1] = ASKING
        end
        request[#request + 1] = parts[item[1]]
      else
        rest[#rest + 1] = item
      end
    end
    if first[6] then
      socket.sleep(0.02 * round)
    end
    local got, unsent
    got, err, code, unsent = send(node, table_concat(request), #request)
    if not got then
      if code == "closed" or code == "refused" or code == "timeout" then
        state.stale = true
      end
      if not (unsent and round == 1 and kind == nil) then
        return nil, err, code
      end
      rest = todo   -- nothing sent: once more, to the node the map read again names
    else
      local k = 0
      for _, item in ipairs(batch) do
        k = k + (kind == "ask" and 2 or 1)   -- past ASKING's OK
        local reply = got[k]
        local to, host, port = _M.redirect(reply, node.host)
        if to == nil then
          replies[item[1]] = reply
        else
          state.redirects[to] = state.redirects[to] + 1
          if to == "moved" then
            state.stale = true
          end
          -- TRYAGAIN: to the same node, after ASKING again if it was sent so
          local how = (to == "ask" or (to == "tryagain" and kind == "ask")) and "ask" or "node"
          rest[#rest + 1] = { item[1], how, host or node.host, port or node.port, reply,
            to == "tryagain" }
        end
      end
    end
    if #rest == 0 then
      return replies
    end
    todo = rest
  end
  for _, item in ipairs(todo) do
    replies[item[1]] = item[5]
  end
  return replies
end

return _M
