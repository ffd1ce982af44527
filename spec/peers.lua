-- The peers beyond the receiver that some specs talk to, reached as servers.certificates,
-- servers.tls_nginx, servers.standin, servers.hostile and servers.peak_memory (spec/servers.lua
-- adds them to its table): certificates made by the openssl command line, a plain nginx over TLS
-- with them, the stand-ins of spec/standin.lua in one, the misbehaving peer of spec/hostile.lua,
-- and this process's peak memory.
local support = require "support"

local quote = support.quote

-- spec/servers.lua's table, its shell runner and trim, and what they give: set by peers.add_to
-- before any function below runs.
local servers, sh, trim, spec_dir, stop_pid

local peers = {}

---------------------------------------------------------------------------------------------
-- A TLS nginx and the stand-ins

-- A CA (ca.crt), a certificate it signs for DNS:localhost (server.crt, server.key), and a
-- second CA that signs nothing (other.crt), made in dir by the openssl command line.
function peers.certificates(dir)
  local commands = {
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=jicoo-test-ca -keyout ca.key -out ca.crt",
    "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout other.key -out other.crt",
    "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr",
    "printf 'subjectAltName=DNS:localhost\\n' > san.ext",
    "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out server.crt",
  }
  for _, command in ipairs(commands) do
    local out, ok = sh("cd " .. quote(dir) .. " && " .. command .. " 2>&1")
    assert(ok, command .. ": " .. tostring(out))
  end
end

-- The stand-ins of spec/standin.lua in an nginx of their own: Jicoo's API over TLS
-- (standin.api_url, its CA standin.ca_file) and a Slack-compatible webhook
-- (standin.slack_url); standin:reset(), standin:set_bookings(list), standin:control(what),
-- standin:slack_fail(n), standin:recorded(name) (the
-- "requests", "slack" or "cancelled" lists), standin:stop().
local Standin = {}
Standin.__index = Standin

function Standin:control(what)
  local out = sh("curl -s --max-time 5 -X POST " .. quote(self.control_url .. what))
  return out
end

function Standin:reset()
  assert(self:control("reset"):find('"ok"', 1, true), "the stand-in did not reset")
end

-- The bookings GET /bookings lists from now on (until a reset): a list of field tables, each
-- over the stand-in's template booking.
function Standin:set_bookings(list)
  local file = os.tmpname()
  support.write(file, require("cjson").encode(list))
  local out = sh("curl -s --max-time 5 -X POST --data-binary @" .. quote(file) .. " "
    .. quote(self.control_url .. "bookings"))
  os.remove(file)
  assert(out:find('"ok"', 1, true), "the stand-in did not take the bookings: " .. tostring(out))
end

function Standin:slack_fail(n)
  assert(self:control("slack_fail?n=" .. n):find('"ok"', 1, true))
end

function Standin:recorded(name)
  local cjson = require "cjson"
  return cjson.decode(self:control(name))
end

function Standin:stop()
  self.server:stop()
end

-- A plain nginx (one worker, no receiver) listening on a free port and, over TLS, on another
-- with a certificate for localhost from servers.certificates(dir) (unless opts.plain): opts.http
-- holds lines for its http block, opts.locations its server's locations (beside /jicoo/stats,
-- which nginx_server waits for). Returns the server, the TLS port and, when it did not start, nil and
-- its log.
function peers.tls_nginx(dir, name, opts)
  if not opts.plain then
    servers.certificates(dir)
  end
  local tls_port
  local server, log = servers.nginx_server(dir, name, function(port)
    tls_port = servers.free_port()
    local lines = {
      "load_module " .. servers.NDK_MODULE .. ";",
      "load_module " .. servers.LUA_MODULE .. ";",
      "daemon on; worker_processes 1; pid logs/nginx.pid; error_log logs/error.log notice;",
      "events { worker_connections 256; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;",
      "  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;",
    }
    for _, line in ipairs(opts.http or {}) do
      lines[#lines + 1] = line
    end
    lines[#lines + 1] = "  server {"
    lines[#lines + 1] = "    listen 127.0.0.1:" .. port .. ";"
    if not opts.plain then
      lines[#lines + 1] = "    listen 127.0.0.1:" .. tls_port .. " ssl;"
      lines[#lines + 1] = "    ssl_certificate " .. dir .. "/server.crt; ssl_certificate_key "
        .. dir .. "/server.key;"
    end
    lines[#lines + 1] = "    location = /jicoo/stats { return 200 'up'; }"
    for _, line in ipairs(opts.locations or {}) do
      lines[#lines + 1] = line
    end
    lines[#lines + 1] = "  }"
    lines[#lines + 1] = "}"
    return table.concat(lines, "\n") .. "\n"
  end, {})
  if not server then
    return nil, nil, log
  end
  return server, tls_port
end

function peers.standin(dir)
  local server, tls_port, log = servers.tls_nginx(dir, "standin", {
    http = {
      "  lua_package_path " .. quote(spec_dir .. "/?.lua;;") .. ";",
      "  lua_shared_dict standin 1m;",
    },
    locations = {
      "    location /v1/ { content_by_lua_block { require('standin').api() } }",
      "    location = /slack/hook { content_by_lua_block { require('standin').slack() } }",
      "    location /control/ { allow 127.0.0.1; deny all;",
      "      content_by_lua_block { require('standin').control() } }",
    },
  })
  assert(server, "the stand-in nginx did not start:\n" .. tostring(log))
  return setmetatable({
    server = server,
    dir = dir,
    ca_file = dir .. "/ca.crt",
    other_ca_file = dir .. "/other.crt",
    api_url = "https://localhost:" .. tls_port .. "/v1",
    slack_url = "http://127.0.0.1:" .. server.port .. "/slack/hook",
    control_url = "http://127.0.0.1:" .. server.port .. "/control/",
    tls_port = tls_port,
    key = "sk_live_standin_0123456789",   -- spec/standin.lua's KEY
  }, Standin)
end

---------------------------------------------------------------------------------------------
-- spec/hostile.lua: a peer that misbehaves on request

local Hostile = {}
Hostile.__index = Hostile

-- The events the hostile peer logged, one string each.
function Hostile:events()
  local events = {}
  local file = io.open(self.log_file, "rb")
  if file then
    for line in file:lines() do
      events[#events + 1] = line
    end
    file:close()
  end
  return events
end

-- The bytes it logged having sent for a behaviour, the last time it ran.
function Hostile:sent(name)
  local sent
  for _, line in ipairs(self:events()) do
    local n = line:match("^sent " .. name:gsub("%p", "%%%0") .. " (%d+)$")
    sent = n and tonumber(n) or sent
  end
  return sent
end

function Hostile:stop()
  stop_pid(self.pid)
  self.pid = nil
end

-- spec/hostile.lua run by this interpreter, in dir, for at most `seconds` (300).
function peers.hostile(dir, seconds)
  local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
  local port_file, log_file = dir .. "/hostile.port", dir .. "/hostile.log"
  local out = sh(interpreter .. " " .. quote(spec_dir .. "/hostile.lua") .. " " .. quote(port_file)
    .. " " .. quote(log_file) .. " " .. (seconds or 300) .. " >" .. quote(dir .. "/hostile.out")
    .. " 2>&1 & echo $!")
  local hostile = setmetatable({ pid = tonumber(trim(out)), log_file = log_file }, Hostile)
  assert(servers.wait_for(function() return io.open(port_file) ~= nil end, 5),
    "spec/hostile.lua did not start: " .. tostring(support.read(dir .. "/hostile.out")))
  hostile.port = tonumber(support.read(port_file))
  return hostile
end

-- The peak resident memory of this process so far, in KiB (Linux), or nil.
function peers.peak_memory()
  local file = io.open("/proc/self/status")
  if not file then
    return nil
  end
  local text = file:read("*a")
  file:close()
  return tonumber(text:match("VmHWM:%s*(%d+)"))
end

-- Adds the functions above to `servers` (the table spec/servers.lua returns), which they use in
-- turn, with its shell runner `sh` and `trim`.
function peers.add_to(servers_table, shell, trimmer)
  servers, sh, trim = servers_table, shell, trimmer
  spec_dir, stop_pid = servers.spec_dir, servers.stop_pid
  for _, name in ipairs({ "certificates", "tls_nginx", "standin", "hostile", "peak_memory" }) do
    servers[name] = peers[name]
  end
end

return peers
