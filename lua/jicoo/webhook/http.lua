-- An HTTP/1.1 client of our own, over socket.lua: nginx's cosockets where they work (never
-- blocking a worker, connections pooled and reused), LuaSocket with LuaSec elsewhere. The same
-- code speaks HTTP in both; `jicoo-webhook send` and handlers' ctx.http use it.
--
--   local res, err = http.request({
--     method = "POST",                    -- default "GET"
--     url = "https://hooks.example.com/x",
--     headers = { ["Content-Type"] = "application/json" },
--     body = "...",                       -- a string; Content-Length is set from it
--     timeout = 10000,                    -- ms, for the connect, each send and each read
--     max_body = 1048576,                 -- bytes of answer at most
--     verify = true,                      -- TLS: the peer's certificate and host name
--     ca_file = nil,                      -- TLS outside nginx: trusted CAs (default: system)
--   })
--   res = { status = 200, reason = "OK", headers = { ["content-type"] = "..." }, body = "..." }
--
-- Header names in res.headers are lower case; a header sent several times is joined with ", ".
-- A request the caller got wrong (no URL, a header holding a line break) raises; a failure of
-- the network or of the peer (refused, timed out, a certificate that does not verify, an answer
-- that is not HTTP or too long) is nil, err naming the host. Redirects are not followed: a 3xx
-- is an answer like any other.
local type = type
local error = error
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local string_find = string.find
local string_format = string.format
local string_lower = string.lower
local string_match = string.match
local string_upper = string.upper
local table_concat = table.concat

local socket = require "jicoo.webhook.socket"
local VERSION = require "jicoo.webhook.version"

local _M = {}

_M.DEFAULT_TIMEOUT = 10000
_M.DEFAULT_MAX_BODY = 1024 * 1024
local MAX_HEADERS = 100
local KEEPALIVE_TIMEOUT, POOL_SIZE = 60000, 16
local CHUNK = 16384

-- scheme, host, port, path (with its query) of an http(s) URL; or nil, why.
local function parse_url(url)
  local scheme, authority, rest = string_match(url, "^(%a[%w+.-]*)://([^/?#]*)([^#]*)")
  if not scheme then
    return nil, "not an absolute URL"
  end
  scheme = string_lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "the scheme must be http or https, got " .. scheme
  end
  if string_find(authority, "@", 1, true) then
    return nil, "credentials in the URL are not supported: send an Authorization header"
  end
  local host, port = string_match(authority, "^%[([%x:.]+)%]:?(%d*)$")   -- [IPv6]:port
  if not host then
    host, port = string_match(authority, "^([^:]+):?(%d*)$")
  end
  if not host or host == "" then
    return nil, "no host"
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then
    return nil, "port out of range"
  end
  return scheme, host, port, rest ~= "" and rest or "/"
end

local function check_header(name, value)
  if type(name) ~= "string" or not string_find(name, "^[!#$%%&'*+.^_`|~%w-]+$") then
    error("http.request: header name " .. string_format("%q", tostring(name))
      .. " is not an HTTP token", 4)
  end
  value = tostring(value)
  if string_find(value, "[\r\n%z]") then
    error("http.request: header " .. name .. " holds a line break or a NUL", 4)
  end
  return value
end

-- The request's bytes.
local function request_text(method, host, port, scheme, path, headers, body)
  local default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local host_header = string_find(host, ":", 1, true) and "[" .. host .. "]" or host
  local lines = { method .. " " .. path .. " HTTP/1.1" }
  local given = {}
  for name, value in pairs(headers) do
    lines[#lines + 1] = name .. ": " .. check_header(name, value)
    given[string_lower(name)] = true
  end
  if not given.host then
    lines[#lines + 1] = "Host: " .. host_header .. (default_port and "" or ":" .. port)
  end
  if not given["user-agent"] then
    lines[#lines + 1] = "User-Agent: jicoo-webhook/" .. VERSION
  end
  if body or method == "POST" or method == "PUT" or method == "PATCH" then
    lines[#lines + 1] = "Content-Length: " .. #(body or "")
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ""
  return table_concat(lines, "\r\n") .. (body or "")
end

-- The status line and headers: status, reason, headers, keep (may the connection be reused),
-- or nil, err, and whether nothing at all was read. 1xx answers are skipped.
local function read_head(conn)
  local first = true
  while true do
    local line, err, partial = conn:receive("*l")
    if not line then
      return nil, "reading the status line: " .. tostring(err), first and (partial or "") == ""
    end
    first = false
    local version, status, reason = string_match(line, "^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
    if not version then
      return nil, "not an HTTP answer: " .. string_format("%q", line:sub(1, 60))
    end
    local headers, count = {}, 0
    while true do
      local header
      header, err = conn:receive("*l")
      if not header then
        return nil, "reading the headers: " .. tostring(err)
      elseif header == "" then
        break
      end
      count = count + 1
      if count > MAX_HEADERS then
        return nil, "more than " .. MAX_HEADERS .. " headers"
      end
      local name, value = string_match(header, "^([^:%s]+):%s*(.-)%s*$")
      if not name then
        return nil, "a header line that is not one: " .. string_format("%q", header:sub(1, 60))
      end
      name = string_lower(name)
      headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
    status = tonumber(status)
    if status >= 200 or status == 101 then
      local connection = string_lower(headers.connection or "")
      local keep = version == "1.1" and not string_find(connection, "close", 1, true)
      return status, reason, headers, keep
    end
  end
end

-- A body of known length.
local function read_length(conn, length, max_body)
  if length > max_body then
    return nil, "an answer of " .. length .. " bytes, over max_body (" .. max_body .. ")"
  end
  if length == 0 then
    return ""
  end
  local body, err = conn:receive(length)
  if not body then
    return nil, "reading the body: " .. tostring(err)
  end
  return body
end

-- A chunked body (RFC 9112 7.1): chunks, then trailers, which are read and left out.
local function read_chunked(conn, max_body)
  local parts, size = {}, 0
  while true do
    local line, err = conn:receive("*l")
    if not line then
      return nil, "reading a chunk's size: " .. tostring(err)
    end
    local hex = string_match(line, "^%s*(%x+)")
    if not hex or #hex > 8 then
      return nil, "a chunk size that is not one: " .. string_format("%q", line:sub(1, 40))
    end
    local n = tonumber(hex, 16)
    if n == 0 then
      break
    end
    size = size + n
    if size > max_body then
      return nil, "an answer over max_body (" .. max_body .. " bytes)"
    end
    local data
    data, err = conn:receive(n)
    if not data then
      return nil, "reading a chunk: " .. tostring(err)
    end
    parts[#parts + 1] = data
    local crlf
    crlf, err = conn:receive("*l")
    if crlf ~= "" then
      return nil, "a chunk not followed by a line end" .. (err and ": " .. err or "")
    end
  end
  repeat   -- trailers, up to the empty line
    local line, err = conn:receive("*l")
    if not line then
      return nil, "reading the trailers: " .. tostring(err)
    end
  until line == ""
  return table_concat(parts)
end

-- A body that ends when the peer closes the connection.
local function read_to_close(conn, max_body)
  local parts, size = {}, 0
  while true do
    local data, err, partial = conn:receive(CHUNK)
    data = data or partial
    if data and #data > 0 then
      size = size + #data
      if size > max_body then
        return nil, "an answer over max_body (" .. max_body .. " bytes)"
      end
      parts[#parts + 1] = data
    end
    if err == "closed" then
      return table_concat(parts)
    elseif err then
      return nil, "reading the body: " .. tostring(err)
    end
  end
end

local function read_body(conn, method, status, headers, max_body)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return ""
  end
  local encoding = headers["transfer-encoding"]
  if encoding and string_find(string_lower(encoding), "chunked", 1, true) then
    return read_chunked(conn, max_body)
  end
  local length = headers["content-length"]
  if length then
    local n = string_match(length, "^%d+$") and tonumber(length)
    if not n then
      return nil, "a Content-Length that is not a number: " .. string_format("%q", length)
    end
    return read_length(conn, n, max_body)
  end
  local body, err = read_to_close(conn, max_body)
  return body, err, true   -- the connection is spent
end

-- One request and its answer (see the header comment).
function _M.request(req)
  if type(req) ~= "table" then
    error("http.request: the request must be a table, got " .. type(req), 2)
  end
  if type(req.url) ~= "string" then
    error("http.request: req.url must be a string", 2)
  end
  local method = string_upper(req.method or "GET")
  if not string_find(method, "^%u+$") then
    error("http.request: req.method must be a method name, got " .. tostring(req.method), 2)
  end
  if req.body ~= nil and type(req.body) ~= "string" then
    error("http.request: req.body must be a string", 2)
  end
  if req.headers ~= nil and type(req.headers) ~= "table" then
    error("http.request: req.headers must be a table", 2)
  end
  local timeout = req.timeout or _M.DEFAULT_TIMEOUT
  local max_body = req.max_body or _M.DEFAULT_MAX_BODY
  if type(timeout) ~= "number" or timeout <= 0 or type(max_body) ~= "number" or max_body < 0 then
    error("http.request: req.timeout (ms) and req.max_body (bytes) must be positive numbers", 2)
  end
  local scheme, host, port, path = parse_url(req.url)
  if not scheme then
    error("http.request: req.url " .. string_format("%q", req.url) .. ": " .. host, 2)
  end
  local text = request_text(method, host, port, scheme, path, req.headers or {}, req.body)

  local tls = scheme == "https" and { server_name = host, verify = req.verify ~= false,
    ca_file = req.ca_file } or nil
  local connection = {
    host = host, port = port, tls = tls,
    connect_timeout = timeout, send_timeout = timeout, read_timeout = timeout,
    pool = "jicoo-webhook:http:" .. scheme .. ":" .. host .. ":" .. port
      .. (tls and not tls.verify and ":noverify" or ""),
    pool_size = POOL_SIZE,
  }
  local where = host .. ":" .. port
  local conn, err, status, reason, headers, keep
  -- A connection from nginx's pool may have been closed by the peer while it idled: one that
  -- fails before any byte of an answer is replaced by a new one, once.
  for _ = 1, 2 do
    conn, err = socket.connect(connection)
    if not conn then
      return nil, err
    end
    local sent, nothing_read
    sent, err = conn:send(text)
    if sent then
      status, reason, headers, keep = read_head(conn)
      if status then
        break
      end
      err, nothing_read = reason, headers
    else
      err, nothing_read = "sending the request: " .. tostring(err), true
    end
    local stale = nothing_read and conn:reused() > 0
    conn:close()
    if not stale then
      return nil, where .. ": " .. err
    end
  end
  if not status then
    return nil, where .. ": " .. err
  end
  local body, spent
  body, err, spent = read_body(conn, method, status, headers, max_body)
  if not body then
    conn:close()
    return nil, where .. ": " .. err
  end
  if keep and not spent and req.keepalive ~= false then
    conn:keepalive(KEEPALIVE_TIMEOUT, POOL_SIZE)
  else
    conn:close()
  end
  return { status = status, reason = reason, headers = headers, body = body }
end

_M.parse_url = parse_url

return _M
