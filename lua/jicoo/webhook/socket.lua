-- A TCP connection, TLS optional, over what the runtime has: nginx's cosockets in a phase that
-- allows them (never blocking the worker), LuaSocket elsewhere (the command line, plain Lua,
-- nginx's init phases), with LuaSec for TLS. The Redis client and the HTTP client speak their
-- protocols over it, so that each protocol is written once for both.
--
--   local conn, err = socket.connect({ host =, port = | path =, connect_timeout =,
--     send_timeout =, read_timeout = (ms), pool = name, tls = { server_name =, verify =,
--     ca_file = } })
--   conn:send(data) -> true | nil, err         conn:receive("*l" | n) -> data | nil, err, partial
--   conn:reused() -> times the connection came from nginx's pool (0: new; always 0 outside)
--   conn:keepalive(timeout_ms, pool_size)      back to nginx's pool (outside nginx: closed)
--   conn:close()                               conn.cosocket: whether it is nginx's
--   socket.sleep(seconds), socket.now()        without blocking a worker where cosockets work
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
-- nginx's cosockets

local Cosocket = {}
Cosocket.__index = Cosocket

function Cosocket:send(data)
  return self.sock:send(data)
end

function Cosocket:receive(pattern)
  return self.sock:receive(pattern)
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

local function cosocket_connect(opts, address)
  local sock, err = rawget(_G, "ngx").socket.tcp()
  if not sock then
    return nil, address .. ": " .. tostring(err)
  end
  sock:settimeouts(opts.connect_timeout, opts.send_timeout, opts.read_timeout)
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
  return setmetatable({ sock = sock, cosocket = true }, Cosocket)
end

---------------------------------------------------------------------------------------------
-- LuaSocket and LuaSec

local Plain = {}
Plain.__index = Plain

-- LuaSec says a TLS read or write that ran out of time "wantread" / "wantwrite": a timeout.
local function plain_error(err)
  if err == "wantread" or err == "wantwrite" then
    return "timeout"
  end
  return err
end

function Plain:send(data)
  self.sock:settimeout(self.send_timeout / 1000)
  local sent, err, last = self.sock:send(data)
  return sent, plain_error(err), last
end

function Plain:receive(pattern)
  self.sock:settimeout(self.read_timeout / 1000)
  local data, err, partial = self.sock:receive(pattern)
  return data, plain_error(err), partial
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

local function luasocket_connect(opts, address)
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
  sock:settimeout(opts.connect_timeout / 1000)
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
    sock, err = luasocket_tls(sock, opts.tls, ssl, address, opts.connect_timeout / 1000)
    if not sock then
      return nil, err
    end
  end
  return setmetatable({ sock = sock, cosocket = false, send_timeout = opts.send_timeout,
    read_timeout = opts.read_timeout }, Plain)
end

-- A connection as the header says; nil, err naming the address when it cannot be made.
function _M.connect(opts)
  local address = address_of(opts)
  if _M.has_cosockets() then
    return cosocket_connect(opts, address)
  end
  return luasocket_connect(opts, address)
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

_M.address_of = address_of

return _M
