-- The addresses of Redis servers as the client's options and the command line give them: a list
-- of { host =, port = } checked (the sentinels', a cluster's seed nodes), a host and a port read
-- from a server's reply (a sentinel's answer, a cluster's slot map or redirect: bytes from the
-- network, so checked as closely as any), and the one parser of the address forms the receiver
-- and the command line take (redis.parse_url).
local type = type
local error = error
local ipairs = ipairs
local tonumber = tonumber
local string_match = string.match
local string_gmatch = string.gmatch

local _M = {}

local MAX_HOST = 255   -- bytes a host name a server gives may take

function _M.is_port(port)
  return type(port) == "number" and port >= 1 and port <= 65535 and port % 1 == 0
end
local is_port = _M.is_port

-- Raises (at `level` for error()) unless o[name] is a non-empty list of { host =, port = }.
function _M.check_list(o, name, who, level)
  local list = o[name]
  if #list == 0 then
    error(who .. ": option '" .. name .. "' must be a non-empty list of { host =, port = }",
      level + 1)
  end
  for i, s in ipairs(list) do
    if type(s) ~= "table" or type(s.host) ~= "string" or s.host == "" or not is_port(s.port) then
      error(who .. ": option '" .. name .. "': entry " .. i
        .. " must be { host = a string, port = a port number }", level + 1)
    end
  end
end

-- A host and a port a server sent (strings, the port's in decimal): host, port as a number, or
-- nil when either is not one. An empty host is `default` (Redis's "the host you asked").
function _M.from_reply(host, port, default)
  if host == "" then
    host = default
  end
  if type(host) ~= "string" or #host > MAX_HOST or not string_match(host, "^[%w%.%-:_]+$") then
    return nil
  end
  if type(port) == "string" and string_match(port, "^%d%d?%d?%d?%d?$") then
    port = tonumber(port)
  end
  if not is_port(port) then
    return nil
  end
  return host, port
end

-- "host:port" or "[v6]:port": host, port (a number, not yet checked to be a port); nil when it
-- is neither.
local function split(item)
  local host, port = string_match(item, "^%[(.+)%]:(%d+)$")
  if not host then
    host, port = string_match(item, "^([^:]+):(%d+)$")
  end
  if host then
    return host, tonumber(port)
  end
end

-- "host:port,host:port" as a list of { host =, port = }, or nil, why.
local function address_list(url, list)
  local out = {}
  for item in string_gmatch(list, "[^,]+") do
    local host, port = split(item)
    if not host or not is_port(port) then
      return nil, "'" .. url .. "': '" .. item .. "' is not host:port"
    end
    out[#out + 1] = { host = host, port = port }
  end
  if #out == 0 or string_match(list, ",,") or string_match(list, "^,") or string_match(list, ",$") then
    return nil, "'" .. url .. "': the address lists host:port,host:port"
  end
  return out
end

local FORMS = "host:port, sentinel://host:port,.../name and cluster://host:port,..."

-- Options for jicoo.net.redis.new from the address forms the receiver and the command line take
-- (JICOO_REDIS, --redis): "host:port", "host" (port 6379), "[v6]:port",
-- "sentinel://host:port,host:port/name" or "cluster://host:port,host:port". nil, why when it is
-- none of them.
function _M.parse_url(url)
  if type(url) ~= "string" or url == "" then
    return nil, "a Redis address must be one of " .. FORMS
  end
  local list, name = string_match(url, "^sentinel://([^/]*)/(.*)$")
  if list then
    if name == "" or string_match(name, "[/%s]") then
      return nil, "'" .. url .. "': a sentinel:// address ends with /MASTER-NAME"
    end
    local sentinels, why = address_list(url, list)
    return sentinels and { sentinels = sentinels, master_name = name }, why
  end
  list = string_match(url, "^cluster://([^/]*)/?$")
  if list then
    local nodes, why = address_list(url, list)
    return nodes and { cluster = nodes }, why
  end
  if string_match(url, "^%a[%w+.-]*://") then
    return nil, "'" .. url .. "': the address forms are " .. FORMS
  end
  local host, port = split(url)
  if not host then
    if string_match(url, ":") and not string_match(url, "^%[") then
      return nil, "'" .. url .. "' is not host:port"
    end
    return { host = string_match(url, "^%[(.+)%]$") or url, port = 6379 }
  end
  if not is_port(port) then
    return nil, "'" .. url .. "': port " .. port .. " is out of range"
  end
  return { host = host, port = port }
end

return _M
