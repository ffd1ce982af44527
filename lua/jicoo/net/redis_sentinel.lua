-- What jicoo.net.redis needs to follow a master that Redis Sentinel watches: the sentinels'
-- options checked, their answer to SENTINEL get-master-addr-by-name read (a reply from the
-- network, so checked as closely as any), and which replies say the master moved.
--
-- The client (net/redis.lua) asks the sentinels in turn, each with its own client and the
-- timeouts of the master's, starting at the one that answered last; it connects to the address
-- given, sends ROLE with AUTH and SELECT on every new connection and refuses one whose first
-- element is not "master". A -READONLY reply, or a connection to the master that cannot be made
-- or that fails, makes it forget the address: the next call asks again.
local type = type
local error = error
local ipairs = ipairs
local tostring = tostring
local string_sub = string.sub
local string_gsub = string.gsub
local table_concat = table.concat

local address = require "jicoo.net.redis_address"

local _M = {}

-- Raises (at `level` for error()) unless the sentinel options hang together: a non-empty list
-- of { host =, port = } and a master_name, and neither path nor username beside them.
function _M.check(o, who, level)
  if o.sentinels == nil then
    if o.master_name ~= nil or o.sentinel_password ~= nil then
      error(who .. ": options 'master_name' and 'sentinel_password' need option 'sentinels'",
        level + 1)
    end
    return
  end
  address.check_list(o, "sentinels", who, level + 1)
  if o.master_name == nil or o.master_name == "" then
    error(who .. ": option 'sentinels' needs option 'master_name'", level + 1)
  end
  if o.path ~= nil then
    error(who .. ": option 'path' and option 'sentinels' name two servers: give one", level + 1)
  end
end

-- The sentinels' state for a client made from options o: a client per sentinel (made by
-- new_client, the plain constructor), the master's name, and where to start asking.
function _M.new(o, new_client)
  local clients = {}
  for i, s in ipairs(o.sentinels) do
    clients[i] = new_client({
      host = s.host, port = s.port, password = o.sentinel_password,
      connect_timeout = o.connect_timeout, send_timeout = o.send_timeout,
      read_timeout = o.read_timeout, max_reply = o.max_reply,
      pool_size = o.pool_size, keepalive_timeout = o.keepalive_timeout,
    })
  end
  return { name = o.master_name, clients = clients, first = 1 }
end

-- A sentinel's reply read as a host and a port, or nil, why.
local function address_of(reply, name, null)
  if reply == null then
    return nil, "knows no master named '" .. name .. "'"
  end
  if type(reply) == "table" and #reply == 2 then
    local host, port = address.from_reply(reply[1], reply[2], nil)
    if host then
      return host, port
    end
  end
  return nil, "answered something that is not a host and a port"
end

-- Asks the sentinels in turn for the master's address: host, port; or nil, err naming every
-- sentinel asked and why each gave none, code (the last one's: refused, timeout, ...).
function _M.master(state, null)
  local clients, errors, code = state.clients, {}, nil
  local n = #clients
  for k = 0, n - 1 do
    local i = (state.first + k - 1) % n + 1
    local client = clients[i]
    local reply, err
    reply, err, code = client:call("SENTINEL", "get-master-addr-by-name", state.name)
    if code == nil then
      local host, port = address_of(reply, state.name, null)
      if host then
        state.first = i
        return host, port
      end
      err, code = "sentinel " .. client.address .. ": " .. port, "protocol"
      client:close()
    elseif code == "reply" then
      err = "sentinel " .. client.address .. ": " .. tostring(err)
    else
      err = string_gsub(tostring(err), "^redis ", "sentinel ")
    end
    errors[#errors + 1] = err
  end
  return nil, "redis master '" .. state.name .. "': no sentinel gave its address ("
    .. table_concat(errors, "; ") .. ")", code
end

-- Whether the replies (a list, an error reply being { err = }) hold a -READONLY: the server is
-- a replica and refused every write in them, so they may be sent again to the master.
function _M.is_readonly(replies)
  for i = 1, #replies do
    local reply = replies[i]
    if type(reply) == "table" and type(reply.err) == "string"
        and string_sub(reply.err, 1, 8) == "READONLY" then
      return true
    end
  end
  return false
end

return _M
