-- What jicoo.net.redis needs to follow a master that Redis Sentinel watches: the sentinels'
-- options checked, their answer to SENTINEL get-master-addr-by-name read (a reply from the
-- network, so checked as closely as any), which replies say the master moved, and the one
-- parser of the address forms the receiver and the command line take (redis.parse_url).
--
-- The client (net/redis.lua) asks the sentinels in turn, each with its own client and the
-- timeouts of the master's, starting at the one that answered last; it connects to the address
-- given, sends ROLE with AUTH and SELECT on every new connection and refuses one whose first
-- element is not "master". A -READONLY reply, or a connection to the master that cannot be made
-- or that fails, makes it forget the address: the next call asks again.
local type = type
local error = error
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local string_match = string.match
local string_sub = string.sub
local string_gsub = string.gsub
local string_gmatch = string.gmatch
local table_concat = table.concat

local _M = {}

local MAX_HOST = 255   -- bytes a host name a sentinel gives may take

local function is_port(port)
  return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end

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
  if #o.sentinels == 0 then
    error(who .. ": option 'sentinels' must be a non-empty list of { host =, port = }", level + 1)
  end
  for i, s in ipairs(o.sentinels) do
    if type(s) ~= "table" or type(s.host) ~= "string" or s.host == "" or not is_port(s.port) then
      error(who .. ": option 'sentinels': entry " .. i
        .. " must be { host = a string, port = a port number }", level + 1)
    end
  end
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
  if type(reply) == "table" and #reply == 2 and type(reply[1]) == "string"
      and type(reply[2]) == "string" and #reply[1] <= MAX_HOST
      and string_match(reply[1], "^[%w%.%-:_]+$") and string_match(reply[2], "^%d%d?%d?%d?%d?$") then
    local port = tonumber(reply[2])
    if is_port(port) then
      return reply[1], port
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

-- Options for jicoo.net.redis.new from the address forms the receiver and the command line take
-- (JICOO_REDIS, --redis): "host:port", "host" (port 6379), "[v6]:port", or
-- "sentinel://host:port,host:port/name". nil, why when it is none of them.
function _M.parse_url(url)
  if type(url) ~= "string" or url == "" then
    return nil, "a Redis address must be host:port or sentinel://host:port,.../name"
  end
  local list, name = string_match(url, "^sentinel://([^/]*)/(.*)$")
  if list then
    if name == "" or string_match(name, "[/%s]") then
      return nil, "'" .. url .. "': a sentinel:// address ends with /MASTER-NAME"
    end
    local sentinels = {}
    for item in string_gmatch(list, "[^,]+") do
      local host, port = string_match(item, "^%[(.+)%]:(%d+)$")
      if not host then
        host, port = string_match(item, "^([^:]+):(%d+)$")
      end
      port = tonumber(port)
      if not host or not is_port(port) then
        return nil, "'" .. url .. "': '" .. item .. "' is not host:port"
      end
      sentinels[#sentinels + 1] = { host = host, port = port }
    end
    if #sentinels == 0 or string_match(list, ",,") or string_match(list, "^,")
        or string_match(list, ",$") then
      return nil, "'" .. url .. "': a sentinel:// address lists host:port,host:port"
    end
    return { sentinels = sentinels, master_name = name }
  end
  if string_match(url, "^%a[%w+.-]*://") then
    return nil, "'" .. url .. "': the address forms are host:port and sentinel://host:port,.../name"
  end
  local host, port = string_match(url, "^%[(.+)%]:(%d+)$")
  if not host then
    host, port = string_match(url, "^([^:]+):(%d+)$")
  end
  if not host then
    if string_match(url, ":") and not string_match(url, "^%[") then
      return nil, "'" .. url .. "' is not host:port"
    end
    return { host = string_match(url, "^%[(.+)%]$") or url, port = 6379 }
  end
  port = tonumber(port)
  if not is_port(port) then
    return nil, "'" .. url .. "': port " .. port .. " is out of range"
  end
  return { host = host, port = port }
end

return _M
