-- A TCP connection, TLS optional, over what the runtime has: nginx's cosockets in a phase that
-- allows them (never blocking the worker), LuaSocket elsewhere (the command line, plain Lua,
-- nginx's init phases), with LuaSec for TLS. The Redis client and the HTTP client speak their
-- protocols over it, so that each protocol is written once for both.
--
--   local conn, err = socket.connect({ host =, port = | path =, deadline = (socket.now()'s
--     seconds) | timeout = (ms from now), pool = name, tls = { server_name =, verify =,
--     ca_file = } })
--   conn:set_deadline(seconds)                 every later send and read ends by then
--   conn:send(data) -> true | nil, err
--   conn:read_line(max) -> line, crlf | nil, err     conn:read(n) -> bytes | nil, err
--   conn:read_to_close(max) -> bytes | nil, err      conn:unread() -> bytes buffered, not read
--   conn:reused() -> times the connection came from nginx's pool (0: new; always 0 outside)
--   conn:keepalive(timeout_ms, pool_size)      back to nginx's pool (outside nginx: closed)
--   conn:stale()                               outside nginx: the peer spoke or closed unasked
--   conn:close()                               conn.cosocket: whether it is nginx's
--   socket.sleep(seconds), socket.now()        without blocking a worker where cosockets work
--
-- err is "timeout" when the deadline passed, "closed" when the peer closed, "line too long" or
-- "too long" past a limit, else what the socket said.
--
-- TLS checks the peer's certificate chain and that it names server_name, unless verify is
-- false. Inside nginx the cosocket does both, against lua_ssl_trusted_certificate; outside,
-- LuaSec checks the chain against ca_file (default: $SSL_CERT_FILE, as for OpenSSL's own tools,
-- else the system's bundle) and the core checks the name (core.x509_check_host: OpenSSL's
-- matching), which LuaSec does not.
local setmetatable = setmetatable
local type = type
local pcall = pcall
local ipairs = ipairs
local rawget = rawget
local require = require
local tostring = tostring
local io_open = io.open
local os_getenv = os.getenv
local os_time = os.time
local os_execute = os.execute
local string_format = string.format
local string_find = string.find
local string_sub = string.sub
local table_concat = table.concat
local math_min = math.min
local math_max = math.max

local _M = {}

-- The nginx phases in which ngx.socket.tcp works.
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

-- Where Debian (and most Linux systems) keep the trusted CA certificates, one file.
local SYSTEM_CA_FILES = { "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt" }

-- Whether this code runs where nginx's cosockets work now.
function _M.has_cosockets()
  local ngx = rawget(_G, "ngx")
  if ngx == nil or type(ngx.socket) ~= "table" or ngx.socket.tcp == nil then
    return false
  end
  return not ngx.get_phase or COSOCKET_PHASES[ngx.get_phase()] == true
end

-- LuaSocket (and, for TLS, LuaSec), or nil and what to install.
function _M.luasocket(tls)
  local ok, socket = pcall(require, "socket")
  if not ok or type(socket) ~= "table" then
    return nil, "needs LuaSocket (require \"socket\"; on Debian the package lua-socket)"
  end
  if tls then
    local has_ssl, ssl = pcall(require, "ssl")
    if not has_ssl or type(ssl) ~= "table" then
      return nil, "needs LuaSec for TLS (require \"ssl\"; on Debian the package lua-sec)"
    end
    return socket, ssl
  end
  return socket
end

local function address_of(opts)
  return opts.path and ("unix:" .. opts.path) or (tostring(opts.host) .. ":" .. tostring(opts.port))
end

---------------------------------------------------------------------------------------------
-- What both kinds of connection share: a deadline and a buffer the protocols read from.
--
-- Every wait is bounded by the connection's deadline (conn:set_deadline): each send and each
-- read gets the time that remains, so a peer that sends one byte at a time cannot stretch an
-- exchange past it. Lines are read from the buffer with a limit on their length, so a peer
-- that never ends a line costs at most that limit in memory.

local CHUNK = 16384

local Connection = {}

-- The exchange ends at `deadline` (seconds, socket.now()'s clock), whatever happens.
function Connection:set_deadline(deadline)
  self.deadline = deadline
end

-- Milliseconds left before the deadline; nil once it has passed.
function Connection:remaining()
  local left = (self.deadline - _M.now()) * 1000
  if left < 1 then
    return nil
  end
  return left
end

function Connection:send(data)
  local ms = self:remaining()
  if not ms then
    return nil, "timeout"
  end
  return self:send_within(data, ms)
end

-- Appends what the peer sends next (at most max bytes) to the buffer: true, or nil, err.
local function fill(self, max)
  local ms = self:remaining()
  if not ms then
    return nil, "timeout"
  end
  local data, err = self:receive_some(max, ms)
  if not data then
    return nil, err
  end
  local pos = self.pos
  if pos > #self.buffer then
    self.buffer = data
  else
    self.buffer = string_sub(self.buffer, pos) .. data
  end
  self.pos = 1
  return true
end

-- The next line, without its line end (LF, or CR LF: the second value says whether a CR came
-- before the LF); nil, err when the peer closes or stalls first, or when the line runs over
-- `max` bytes (err "line too long").
function Connection:read_line(max)
  while true do
    local pos = self.pos
    local lf = string_find(self.buffer, "\n", pos, true)
    if lf then
      if lf - pos > max then
        return nil, "line too long"
      end
      self.pos = lf + 1
      if lf > pos and string_sub(self.buffer, lf - 1, lf - 1) == "\r" then
        return string_sub(self.buffer, pos, lf - 2), true
      end
      return string_sub(self.buffer, pos, lf - 1), false
    end
    if #self.buffer - pos + 1 > max then
      return nil, "line too long"
    end
    local ok, err = fill(self, CHUNK)
    if not ok then
      return nil, err
    end
  end
end

-- Exactly n bytes; nil, err when the peer closes or stalls first.
function Connection:read(n)
  local buffer, pos = self.buffer, self.pos
  local have = #buffer - pos + 1
  if have >= n then
    self.pos = pos + n
    return string_sub(buffer, pos, pos + n - 1)
  end
  local parts, got = { string_sub(buffer, pos) }, have
  self.buffer, self.pos = "", 1
  while got < n do
    local ms = self:remaining()
    if not ms then
      return nil, "timeout"
    end
    local data, err = self:receive_some(math_min(n - got, CHUNK), ms)
    if not data then
      return nil, err
    end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table_concat(parts)
end

-- Whatever the peer sends until it closes, at most max bytes: the bytes, or nil, err (err
-- "too long" past max).
function Connection:read_to_close(max)
  local parts = { string_sub(self.buffer, self.pos) }
  local got = #parts[1]
  self.buffer, self.pos = "", 1
  while true do
    if got > max then
      return nil, "too long"
    end
    local ms = self:remaining()
    if not ms then
      return nil, "timeout"
    end
    local data, err = self:receive_some(CHUNK, ms)
    if not data then
      if err == "closed" then
        return table_concat(parts)
      end
      return nil, err
    end
    parts[#parts + 1] = data
    got = got + #data
  end
end

-- Bytes received and not yet read: after a whole answer, a sign the peer said more than asked.
function Connection:unread()
  return #self.buffer - self.pos + 1
end

local function new_connection(kind, fields)
  fields.buffer, fields.pos = "", 1
  fields.deadline = fields.deadline or _M.now() + (fields.timeout or 60000) / 1000
  return setmetatable(fields, kind)
end

---------------------------------------------------------------------------------------------
-- nginx's cosockets

local Cosocket = setmetatable({}, { __index = Connection })
Cosocket.__index = Cosocket

function Cosocket:send_within(data, ms)
  local sock = self.sock
  sock:settimeout(ms)
  return sock:send(data)
end

function Cosocket:receive_some(max, ms)
  local sock = self.sock
  sock:settimeout(ms)
  return sock:receiveany(max)
end

function Cosocket:reused()
  return self.sock:getreusedtimes() or 0
end

function Cosocket:keepalive(timeout, pool_size)
  local ok = self.sock:setkeepalive(timeout, pool_size)
  if not ok then
    self.sock:close()
  end
end

function Cosocket:close()
  self.sock:close()
end

-- Where to connect for a host name: "localhost" and names under it are the loopback address
-- (RFC 6761, 6.3), without asking a resolver, which nginx has only when configured with one.
local function connect_host(host)
  if host == "localhost" or (type(host) == "string" and host:sub(-10) == ".localhost") then
    return "127.0.0.1"
  end
  return host
end

local function cosocket_connect(opts, address, deadline)
  local sock, err = rawget(_G, "ngx").socket.tcp()
  if not sock then
    return nil, address .. ": " .. tostring(err)
  end
  local ms = (deadline - _M.now()) * 1000
  if ms < 1 then
    return nil, address .. ": cannot connect: timeout"
  end
  sock:settimeout(ms)   -- the connect and, with TLS, the handshake
  local ok
  local pool = opts.pool and { pool = opts.pool, pool_size = opts.pool_size } or nil
  if opts.path then
    ok, err = sock:connect("unix:" .. opts.path, pool)
  else
    ok, err = sock:connect(connect_host(opts.host), opts.port, pool)
  end
  if not ok then
    return nil, address .. ": cannot connect: " .. tostring(err)
  end
  local tls = opts.tls
  if tls and (sock:getreusedtimes() or 0) == 0 then
    ok, err = sock:sslhandshake(nil, tls.server_name, tls.verify ~= false)
    if not ok then
      sock:close()
      return nil, address .. ": TLS: " .. tostring(err)
    end
  end
  return new_connection(Cosocket, { sock = sock, cosocket = true, deadline = deadline })
end

---------------------------------------------------------------------------------------------
-- LuaSocket and LuaSec

local Plain = setmetatable({}, { __index = Connection })
Plain.__index = Plain

-- LuaSec says a TLS read or write that ran out of time "wantread" / "wantwrite": a timeout.
local function plain_error(err)
  if err == "wantread" or err == "wantwrite" then
    return "timeout"
  end
  return err
end

-- LuaSocket keeps two timeouts, one for each wait ("b") and one for the whole call ("t"): a
-- call that may wait gets both, so that neither a left-over 0 nor a slow peer outlasts `ms`.
local function wait_at_most(sock, ms)
  sock:settimeout(ms / 1000)
  sock:settimeout(ms / 1000, "t")
end

function Plain:send_within(data, ms)
  wait_at_most(self.sock, ms)
  local sent, err, last = self.sock:send(data)
  return sent, plain_error(err), last
end

-- LuaSocket has no "whatever has come" read: wait for one byte, then take what else is there
-- without waiting.
function Plain:receive_some(max, ms)
  local sock = self.sock
  wait_at_most(sock, ms)
  local data, err = sock:receive(1)
  if not data then
    return nil, plain_error(err)
  end
  if max > 1 then
    sock:settimeout(0)
    local more, _, partial = sock:receive(max - 1)
    more = more or partial
    if more and more ~= "" then
      data = data .. more
    end
  end
  return data
end

-- Whether the peer has said something (or closed) while nobody asked: on a connection kept
-- between calls, a sign it is out of step or gone.
function Plain:stale()
  if self:unread() > 0 then
    return true
  end
  self.sock:settimeout(0)
  local data, err = self.sock:receive(1)
  return data ~= nil or plain_error(err) ~= "timeout"
end

function Plain.reused()
  return 0
end

-- Outside nginx there is no pool to go back to: a caller that keeps connections keeps the
-- object itself (the Redis client does).
function Plain.keepalive(conn)
  conn.sock:close()
end

function Plain:close()
  self.sock:close()
end

local function system_ca_file()
  local configured = os_getenv("SSL_CERT_FILE")
  if configured and configured ~= "" then
    return configured
  end
  for _, path in ipairs(SYSTEM_CA_FILES) do
    local file = io_open(path, "rb")
    if file then
      file:close()
      return path
    end
  end
  return nil
end

local function luasocket_tls(sock, tls, ssl, address, timeout)
  local verify = tls.verify ~= false
  local ca_file = verify and (tls.ca_file or system_ca_file()) or nil
  if verify and not ca_file then
    return nil, address .. ": TLS: no trusted certificates to verify the peer with (give"
      .. " ca_file, or install ca-certificates)"
  end
  local wrapped, err = ssl.wrap(sock, {
    mode = "client", protocol = "any",
    options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" },
    verify = verify and { "peer", "fail_if_no_peer_cert" } or "none",
    cafile = ca_file,
  })
  if not wrapped then
    return nil, address .. ": TLS: " .. tostring(err)
  end
  wrapped:sni(tls.server_name)
  wrapped:settimeout(timeout)
  local ok
  ok, err = wrapped:dohandshake()
  if not ok then
    wrapped:close()
    return nil, address .. ": TLS: " .. tostring(err)
  end
  if verify then
    local cert = wrapped:getpeercertificate()
    local matched, why = false, "no peer certificate"
    if cert then
      matched, why = require("jicoo.webhook.core").x509_check_host(cert:pem(), tls.server_name)
    end
    if not matched then
      wrapped:close()
      return nil, address .. ": TLS: " .. tostring(why) .. " (" .. tls.server_name .. ")"
    end
  end
  return wrapped
end

local function luasocket_connect(opts, address, deadline)
  local socket, ssl = _M.luasocket(opts.tls)
  if not socket then
    return nil, address .. ": " .. ssl
  end
  local sock, err
  if opts.path then
    local has_unix, unix = pcall(require, "socket.unix")
    if not has_unix then
      return nil, address .. ": needs LuaSocket's socket.unix"
    end
    sock, err = (unix.stream or unix)()
  else
    sock, err = socket.tcp()
  end
  if not sock then
    return nil, address .. ": " .. tostring(err)
  end
  local seconds = deadline - _M.now()
  if seconds <= 0.001 then
    sock:close()
    return nil, address .. ": cannot connect: timeout"
  end
  wait_at_most(sock, seconds * 1000)
  local ok
  if opts.path then
    ok, err = sock:connect(opts.path)
  else
    ok, err = sock:connect(connect_host(opts.host), opts.port)
  end
  if not ok then
    sock:close()
    return nil, address .. ": cannot connect: " .. tostring(err)
  end
  if opts.tls then
    sock, err = luasocket_tls(sock, opts.tls, ssl, address, math_max(deadline - _M.now(), 0.001))
    if not sock then
      return nil, err
    end
  end
  return new_connection(Plain, { sock = sock, cosocket = false, deadline = deadline })
end

-- The short word a program tests for a failure this module or a protocol over it reports, from
-- its message: timeout, closed, refused (no connection: refused, unreachable, no such host),
-- tls, limit (an answer over a bound), else protocol (bytes that are not the protocol).
local CODES = {
  { "timeout", "timeout" }, { "wantread", "timeout" }, { "wantwrite", "timeout" },
  { "TLS", "tls" }, { "cannot connect", "refused" }, { "closed", "closed" },
  { "more than the replies", "protocol" }, { "too long", "limit" }, { "line over", "limit" },
  { "over max_", "limit" }, { "more than", "limit" }, { "run over", "limit" },
  { "nested deeper", "limit" },
  { "needs LuaSocket", "refused" }, { "needs LuaSec", "tls" }, { "AUTH failed", "refused" },
  { "SELECT", "refused" },
}

function _M.code_of(message)
  message = tostring(message)
  for _, rule in ipairs(CODES) do
    if string_find(message, rule[1], 1, true) then
      return rule[2]
    end
  end
  return "protocol"
end

-- A connection as the header says, its deadline opts.deadline (or opts.timeout ms from now);
-- nil, err naming the address, code (code_of) when it cannot be made in time.
function _M.connect(opts)
  local address = address_of(opts)
  local deadline = opts.deadline or _M.now() + (opts.timeout or 60000) / 1000
  local conn, err
  if _M.has_cosockets() then
    conn, err = cosocket_connect(opts, address, deadline)
  else
    conn, err = luasocket_connect(opts, address, deadline)
  end
  if not conn then
    return nil, err, _M.code_of(err)
  end
  return conn
end

-- Waits, yielding to nginx where it can (ngx.sleep), else in LuaSocket's sleep.
function _M.sleep(seconds)
  if seconds <= 0 then
    return
  end
  if _M.has_cosockets() then
    rawget(_G, "ngx").sleep(seconds)
    return
  end
  local socket = _M.luasocket()
  if socket then
    socket.sleep(seconds)
    return
  end
  os_execute(string_format("sleep %.3f", seconds))   -- no LuaSocket (a transport of one's own)
end

-- Seconds now, with a fraction where the runtime has one.
function _M.now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then
    ngx.update_time()
    return ngx.now()
  end
  local socket = _M.luasocket()
  if socket then
    return socket.gettime()
  end
  return os_time()
end

return _M
