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
--
-- A built-in's result goes to a local before it is returned: inside nginx a function that ends
-- in a tail call of a built-in is a trace LuaJIT gives up on (spec/jit_trace.lua).
local type = type
local pcall = pcall
local ipairs = ipairs
local rawget = rawget
local require = require
local tostring = tostring
local io_open = io.open
local os_getenv = os.getenv
local string_find = string.find
local math_max = math.max

local connection = require "jicoo.net.connection"
local runtime = require "jicoo.net.runtime"

local _M = {}

-- The runtime's, given here to the protocols over this module.
_M.has_cosockets, _M.luasocket = runtime.has_cosockets, runtime.luasocket
_M.now, _M.sleep = runtime.now, runtime.sleep

-- Where Debian (and most Linux systems) keep the trusted CA certificates, one file.
local SYSTEM_CA_FILES = { "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt" }

local function address_of(opts)
  return opts.path and ("unix:" .. opts.path) or (tostring(opts.host) .. ":" .. tostring(opts.port))
end

---------------------------------------------------------------------------------------------
-- nginx's cosockets

local Cosocket = connection.kind()

function Cosocket:send_within(data, ms)
  local sock = self.sock
  sock:settimeout(ms)
  local sent, err = sock:send(data)
  return sent, err
end

function Cosocket:receive_some(max, ms)
  local sock = self.sock
  sock:settimeout(ms)
  local data, err = sock:receiveany(max)
  return data, err
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
  -- (every field connection.new sets is made here: a table that grows is rehashed)
  return connection.new(Cosocket, { sock = sock, cosocket = true, deadline = deadline,
    buffer = "", pos = 1 })
end

---------------------------------------------------------------------------------------------
-- LuaSocket and LuaSec

local Plain = connection.kind()

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
  return connection.new(Plain, { sock = sock, cosocket = false, deadline = deadline,
    buffer = "", pos = 1 })
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
  { "SELECT", "refused" }, { "not the master", "refused" },
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

return _M
