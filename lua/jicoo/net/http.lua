-- An HTTP/1.1 client of our own, over socket.lua: nginx's cosockets where they work (never
-- blocking a worker, connections pooled and reused), LuaSocket with LuaSec elsewhere. The same
-- code speaks HTTP in both; `jicoo-webhook send` and handlers' ctx.http use it.
--
--   local res, err = http.request({
--     method = "POST",                    -- default "GET"
--     url = "https://hooks.example.com/x",
--     headers = { ["Content-Type"] = "application/json" },
--     body = "...",                       -- a string; Content-Length is set from it
--     query = { email = "a@example.com" },  -- added to the URL's query, percent-encoded
--     timeout = 10000,                    -- ms for the whole exchange: connect, send, answer
--     max_body = 1048576,                 -- bytes of answer at most
--     verify = true,                      -- TLS: the peer's certificate and host name
--     ca_file = nil,                      -- TLS outside nginx: trusted CAs (default: system)
--   })
--   res = { status = 200, reason = "OK", headers = { ["content-type"] = "..." }, body = "..." }
--
-- Header names in res.headers are lower case; a header sent several times is joined with ", ".
-- In the URL's path and query, a control byte, a space or a byte over 0x7E is sent
-- percent-encoded. The answer's lines, head, headers, trailers and 1xx answers are bounded
-- (MAX_LINE, MAX_HEAD, MAX_HEADERS, MAX_INTERIM), its framing read strictly.
-- A request the caller got wrong (no URL, a header holding a line break) raises; a failure of
-- the network or of the peer (refused, timed out, a certificate that does not verify, an answer
-- that is not HTTP or too long) is nil, err naming the host, code: timeout, closed, refused,
-- tls, limit or protocol. Redirects are not followed: a 3xx
-- is an answer like any other.
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local string_byte = string.byte
local string_find = string.find
local string_format = string.format
local string_gsub = string.gsub
local string_lower = string.lower
local string_match = string.match
local string_sub = string.sub
local string_upper = string.upper
local table_concat = table.concat
local table_sort = table.sort

local options = require "jicoo.webhook.options"
local socket = require "jicoo.net.socket"
local VERSION = require "jicoo.webhook.version"

local _M = {}

_M.DEFAULT_TIMEOUT = 10000
_M.DEFAULT_MAX_BODY = 1024 * 1024
-- What an answer's head may hold: a line (the status line, a header, a chunk's size line, a
-- trailer), the whole head (1xx answers included) and the trailers, in bytes; headers in one
-- head or in the trailers; 1xx answers before the final one.
_M.MAX_LINE = 8192
_M.MAX_HEAD = 65536
_M.MAX_HEADERS = 100
_M.MAX_INTERIM = 10
local KEEPALIVE_TIMEOUT, POOL_SIZE = 60000, 16

-- What a request may say (the header comment).
local REQUEST = options.schema("http.request", {
  { "method", "string", default = "GET", check = function(v) return string_find(v, "^%a+$") end,
    what = "a method name" },
  { "url", "string", required = true, what = "an http:// or https:// URL" },
  { "headers", "table", default = {} },
  { "body", "string" },
  { "query", "table", what = "a table of parameters" },
  { "timeout", "number", default = _M.DEFAULT_TIMEOUT, check = options.positive,
    what = "a positive number of milliseconds" },
  { "max_body", "number", default = _M.DEFAULT_MAX_BODY, check = options.not_negative,
    what = "a number of bytes" },
  { "verify", "boolean", default = true },
  { "ca_file", "string" },
  { "keepalive", "boolean", default = true },
})

-- Methods a server must treat as safe to repeat (RFC 9110, 9.2.2): the only ones sent again on
-- a fresh connection when a pooled one turns out to be closed.
local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true, PUT = true,
  DELETE = true }

-- Bytes of a path or query sent as they are; every other byte (a control byte, a space, a byte
-- over 0x7E) goes percent-encoded, so that nothing a handler puts in a URL can end the request
-- line.
local function encode_unsafe(text)
  return (string_gsub(text, "[%z\1-\32\127-\255]", function(c)
    return string_format("%%%02X", string_byte(c))
  end))
end

-- A query parameter's name or value: everything but RFC 3986's unreserved bytes encoded.
local function encode_component(text)
  return (string_gsub(text, "[^%w%-%._~]", function(c)
    return string_format("%%%02X", string_byte(c))
  end))
end

-- The query string of req.query: { name = value | { value, ... } }, names sorted.
local function query_text(query)
  local names = {}
  for name in pairs(query) do
    if type(name) ~= "string" then
      error("http.request: req.query's names must be strings, got " .. type(name), 4)
    end
    names[#names + 1] = name
  end
  table_sort(names)
  local parts = {}
  for _, name in ipairs(names) do
    local value = query[name]
    local values = type(value) == "table" and value or { value }
    for _, v in ipairs(values) do
      local kind = type(v)
      if kind ~= "string" and kind ~= "number" and kind ~= "boolean" then
        error("http.request: req.query." .. name .. " must be a string, a number, a boolean or a"
          .. " list of them, got " .. kind, 4)
      end
      parts[#parts + 1] = encode_component(name) .. "=" .. encode_component(tostring(v))
    end
  end
  return table_concat(parts, "&")
end

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
    host, port = string_match(authority, "^([%w.%-_]+):?(%d*)$")
  end
  if not host then
    return nil, "no host, or a host name with bytes other than letters, digits, '.', '-', '_'"
  end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then
    return nil, "port out of range"
  end
  return scheme, host, port, rest ~= "" and encode_unsafe(rest) or "/"
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

local function quoted(line, n)
  return string_format("%q", string_sub(line, 1, n or 60))
end

-- What a read's failure says, as this client words it.
local function read_error(what, err)
  if err == "line too long" then
    return what .. ": a line over " .. _M.MAX_LINE .. " bytes"
  end
  return what .. ": " .. tostring(err)
end

-- Header lines up to the empty line, into `headers` (names lower-cased, repeats joined with
-- ", "): the bytes they took, or nil, err. `budget` bytes at most, MAX_HEADERS lines.
local function read_fields(conn, headers, budget, what)
  local count, used = 0, 0
  while true do
    local line, err = conn:read_line(_M.MAX_LINE)
    if not line then
      return nil, read_error("reading the " .. what, err)
    end
    used = used + #line + 2
    if used > budget then
      return nil, "the " .. what .. " run over " .. _M.MAX_HEAD .. " bytes"
    end
    if line == "" then
      return used
    end
    count = count + 1
    if count > _M.MAX_HEADERS then
      return nil, "more than " .. _M.MAX_HEADERS .. " " .. what
    end
    -- A field is a token, a colon, then a value of visible bytes, spaces and tabs (RFC 9110,
    -- 5.5): a CR, a NUL or another control byte in it is refused, not dropped.
    local name, value = string_match(line, "^([!#$%%&'*+.^_`|~%w-]+):[ \t]*(.-)[ \t]*$")
    if not name then
      return nil, "a header line that is not one: " .. quoted(line)
    elseif string_find(value, "[%z\1-\8\10-\31\127]") then
      return nil, "a control byte in the value of " .. name
    end
    name = string_lower(name)
    headers[name] = headers[name] and headers[name] .. ", " .. value or value
  end
end

-- The status line and headers: status, reason, headers, keep (may the connection be reused),
-- or nil, err, and whether nothing at all was read. 1xx answers are read and passed over, up to
-- MAX_INTERIM of them.
local function read_head(conn)
  local budget = _M.MAX_HEAD
  for interim = 0, _M.MAX_INTERIM do
    local line, err = conn:read_line(_M.MAX_LINE)
    if not line then
      return nil, read_error("reading the status line", err), interim == 0 and conn:unread() == 0
    end
    local minor, code, rest = string_match(line, "^HTTP/1%.([01]) (%d%d%d)(.*)$")
    if not minor or (rest ~= "" and string_sub(rest, 1, 1) ~= " ") then
      return nil, "not an HTTP/1.x status line: " .. quoted(line)
    end
    local status = tonumber(code)
    if status < 100 or status > 599 then
      return nil, "a status out of 100-599: " .. code
    elseif string_find(rest, "[%z\1-\8\10-\31\127]") then
      return nil, "a control byte in the status line"
    end
    budget = budget - #line - 2
    local headers = {}
    local used, why = read_fields(conn, headers, budget, "headers")
    if not used then
      return nil, why
    end
    budget = budget - used
    if status >= 200 or status == 101 then
      local connection = string_lower(headers.connection or "")
      local keep = minor == "1" and not string_find(connection, "close", 1, true)
      return status, string_sub(rest, 2), headers, keep
    end
  end
  return nil, "more than " .. _M.MAX_INTERIM .. " 1xx answers"
end

-- A body of known length.
local function read_length(conn, length, max_body)
  if length > max_body then
    return nil, "an answer of " .. length .. " bytes, over max_body (" .. max_body .. ")"
  end
  if length == 0 then
    return ""
  end
  local body, err = conn:read(length)
  if not body then
    return nil, "reading the body: " .. tostring(err)
  end
  return body
end

-- A chunked body (RFC 9112 7.1): chunks, then trailers, which are read and left out.
local function read_chunked(conn, max_body)
  local parts, size = {}, 0
  while true do
    local line, err = conn:read_line(_M.MAX_LINE)
    if not line then
      return nil, read_error("reading a chunk's size", err)
    end
    local hex = string_match(line, "^(%x+)$") or string_match(line, "^(%x+)[ \t]*;")
    if not hex or #hex > 8 then
      return nil, "a chunk size that is not one: " .. quoted(line, 40)
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
    data, err = conn:read(n)
    if not data then
      return nil, "reading a chunk: " .. tostring(err)
    end
    parts[#parts + 1] = data
    line, err = conn:read_line(2)
    if line ~= "" then
      return nil, "a chunk not followed by a line end" .. (line and "" or ": " .. tostring(err))
    end
  end
  local ok, err = read_fields(conn, {}, _M.MAX_HEAD, "trailers")
  if not ok then
    return nil, err
  end
  return table_concat(parts)
end

-- The body, and whether the connection is spent (read to its close).
local function read_body(conn, method, status, headers, max_body)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    return ""
  end
  local encoding, length = headers["transfer-encoding"], headers["content-length"]
  if encoding then
    -- Only chunked is decoded here; with a Content-Length beside it the answer's length is
    -- ambiguous (RFC 9112, 6.3: a sign of smuggling), so neither is believed.
    if string_lower(string_match(encoding, "^[ \t]*(.-)[ \t]*$")) ~= "chunked" then
      return nil, "a Transfer-Encoding other than chunked: " .. quoted(encoding, 40)
    elseif length then
      return nil, "both Transfer-Encoding and Content-Length"
    end
    return read_chunked(conn, max_body)
  end
  if length then
    local n = string_match(length, "^%d+$") and #length <= 15 and tonumber(length)
    if not n then
      return nil, "a Content-Length that is not one number: " .. quoted(length, 40)
    end
    return read_length(conn, n, max_body)
  end
  local body, err = conn:read_to_close(max_body)
  if not body then
    if err == "too long" then
      return nil, "an answer over max_body (" .. max_body .. " bytes)"
    end
    return nil, "reading the body: " .. tostring(err)
  end
  return body, true
end

-- err after the place it names, with the request's time limit when that is what ran out; and
-- its code (socket.code_of).
local function failure(where, err, timeout)
  local message = where and where .. ": " .. tostring(err) or tostring(err)
  local code = socket.code_of(err)
  if code == "timeout" then
    message = message .. " (the request's " .. timeout .. " ms ran out)"
  end
  return message, code
end

-- One request and its answer (see the header comment).
function _M.request(req)
  if type(req) ~= "table" then
    error("http.request: the request must be a table, got " .. type(req), 2)
  end
  req = REQUEST:check(req, 2)
  local method = string_upper(req.method)
  local timeout, max_body = req.timeout, req.max_body
  local scheme, host, port, path = parse_url(req.url)
  if not scheme then
    error("http.request: req.url " .. string_format("%q", req.url) .. ": " .. host, 2)
  end
  if req.query then
    local query = query_text(req.query)
    if query ~= "" then
      path = path .. (string_find(path, "?", 1, true) and "&" or "?") .. query
    end
  end
  local text = request_text(method, host, port, scheme, path, req.headers or {}, req.body)

  local deadline = socket.now() + timeout / 1000
  local tls = scheme == "https" and { server_name = host, verify = req.verify ~= false,
    ca_file = req.ca_file } or nil
  local connection = {
    host = host, port = port, tls = tls, deadline = deadline,
    pool = "jicoo-webhook:http:" .. scheme .. ":" .. host .. ":" .. port
      .. (tls and not tls.verify and ":noverify" or ""),
    pool_size = POOL_SIZE,
  }
  local where = host .. ":" .. port
  local conn, err, status, reason, headers, keep
  -- A connection from nginx's pool may have been closed by the peer while it idled: one that
  -- fails before any byte of an answer is replaced by a new one, once, for a method that is
  -- safe to repeat (the peer may have read the request before it closed).
  for _ = 1, 2 do
    conn, err = socket.connect(connection)
    if not conn then
      return nil, failure(nil, err, timeout)
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
      return nil, failure(where, err, timeout)
    elseif not IDEMPOTENT[method] then
      return nil, where .. ": " .. err .. " (a pooled connection the peer had closed; a "
        .. method .. " is not sent twice)", "closed"
    end
  end
  if not status then
    return nil, failure(where, err, timeout)
  end
  local body, spent
  body, spent = read_body(conn, method, status, headers, max_body)
  if not body then
    conn:close()
    return nil, failure(where, spent, timeout)
  end
  -- Bytes past the answer mean the peer and this client disagree on where it ended: the
  -- connection is not used again.
  if keep and not spent and req.keepalive ~= false and conn:unread() == 0 then
    conn:keepalive(KEEPALIVE_TIMEOUT, POOL_SIZE)
  else
    conn:close()
  end
  return { status = status, reason = reason, headers = headers, body = body }
end

return _M
