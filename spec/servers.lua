-- Real nginx and redis-server processes for the integration specs, on 127.0.0.1 and free ports,
-- each stopped by its pid; and an independent client: curl sends, `openssl dgst` signs. The
-- peers beyond them (a TLS nginx, the stand-ins, the hostile peer) are in spec/peers.lua, and
-- reached here as servers.X too.
local support = require "support"

local servers = {}

local quote = support.quote
local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
servers.spec_dir = spec_dir
servers.root = support.run("cd " .. quote(spec_dir .. "/..") .. " && pwd"):match("^(.-)%s*$")

-- The servers and the clients here are other people's programs: under spec/sanitize.sh they
-- run without its preloaded ASan runtime (curl under it has hung in a futex, past --max-time).
local function sh(command)
  local out, ok = support.run("unset LD_PRELOAD; " .. command)
  return out, ok
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function find_program(name, extra)
  local out, ok = sh("command -v " .. name .. " 2>/dev/null || ls " .. (extra or "/nonexistent")
    .. " 2>/dev/null")
  out = trim(out or "")
  if ok and out ~= "" then
    return out:match("^[^\n]+")
  end
  return nil
end

servers.nginx = find_program("nginx", "/usr/sbin/nginx")
servers.redis_server = find_program("redis-server", "/usr/bin/redis-server")
servers.redis_cli = find_program("redis-cli")
servers.wrk = find_program("wrk")
servers.LUA_MODULE = "/usr/lib/nginx/modules/ngx_http_lua_module.so"
servers.NDK_MODULE = "/usr/lib/nginx/modules/ndk_http_module.so"
servers.core_dir = os.getenv("JICOO_CORE_DIR") or (servers.root .. "/build/luajit")

-- Names of what is missing for the nginx specs (empty when they can run).
function servers.missing(with_redis)
  local missing = {}
  local function need(ok, what)
    if not ok then
      missing[#missing + 1] = what
    end
  end
  need(servers.nginx, "nginx")
  need(io.open(servers.LUA_MODULE) ~= nil, servers.LUA_MODULE)
  need(find_program("curl"), "curl")
  need(find_program("openssl"), "openssl")
  if with_redis then
    need(servers.redis_server, "redis-server")
    need(servers.redis_cli, "redis-cli")
  end
  return missing
end

function servers.sleep(seconds)
  sh("sleep " .. seconds)
end

-- Polls predicate every 0.1 s for up to `seconds`; its last answer.
function servers.wait_for(predicate, seconds)
  for _ = 1, seconds * 10 do
    if predicate() then
      return true
    end
    servers.sleep(0.1)
  end
  return predicate()
end

-- The lines of a log a test handler appends to, counted by their first tab-separated column
-- (a delivery's key): { [key] = lines }, and the number of lines.
function servers.counts(path)
  local counts, total = {}, 0
  local file = io.open(path, "rb")
  if file then
    for line in file:lines() do
      local key = line:match("^([^\t]+)")
      counts[key] = (counts[key] or 0) + 1
      total = total + 1
    end
    file:close()
  end
  return counts, total
end

servers.unmount = support.unmount

function servers.temp_dir()
  local out = sh("mktemp -d /tmp/jicoo-it.XXXXXX")
  return trim(out)
end

function servers.remove_dir(dir)
  if dir and dir:match("^/tmp/jicoo%-it%.") then
    sh("rm -rf " .. quote(dir))
  end
end

---------------------------------------------------------------------------------------------
-- Ports: a random one nobody listens on now; the caller retries when the bind still fails.

local function listening_ports()
  local used = {}
  for _, table_file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local file = io.open(table_file)
    if file then
      for line in file:lines() do
        local port = line:match("^%s*%d+:%s+%x+:(%x+)%s")
        if port then
          used[tonumber(port, 16)] = true
        end
      end
      file:close()
    end
  end
  return used
end

do
  local stat = io.open("/proc/self/stat")
  local pid = stat and tonumber(stat:read("*l"):match("^(%d+)")) or 0
  if stat then stat:close() end
  math.randomseed(os.time() * 1000 + pid)
end

function servers.free_port()
  local used = listening_ports()
  for _ = 1, 100 do
    local port = math.random(20000, 59999)
    if not used[port] then
      return port
    end
  end
  error("no free port found")
end

-- Whether pid runs: its /proc entry is there and not a zombie's (a process that ended but that
-- no parent has waited for yet; `kill -0` would call it alive).
local function is_alive(pid)
  local file = io.open("/proc/" .. pid .. "/stat")
  if not file then
    return false
  end
  local stat = file:read("*l") or ""
  file:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end
servers.is_alive = is_alive

-- TERM, then wait up to 5 s for the process to go, then KILL.
local function stop_pid(pid)
  if not pid or not is_alive(pid) then
    return
  end
  sh("kill -TERM " .. pid .. " 2>/dev/null")
  for i = 1, 100 do
    if not is_alive(pid) then
      return
    end
    servers.sleep(i < 10 and 0.01 or 0.05)
  end
  sh("kill -KILL " .. pid .. " 2>/dev/null")
end
servers.stop_pid = stop_pid

---------------------------------------------------------------------------------------------
-- redis-server

local Redis = {}
Redis.__index = Redis

function Redis:cli(args)
  local auth = self.password and (" -a " .. quote(self.password) .. " --no-auth-warning") or ""
  local out = sh(quote(servers.redis_cli) .. " -h 127.0.0.1 -p " .. self.port .. auth .. " "
    .. args .. " 2>&1")
  return trim(out or "")
end

function Redis:start()
  local extra = {}
  if self.password then
    extra[#extra + 1] = "--requirepass " .. quote(self.password)
  end
  for _, arg in ipairs(self.args or {}) do
    extra[#extra + 1] = quote(arg)
  end
  local out = sh(quote(servers.redis_server) .. " --port " .. self.port
    .. " --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir " .. quote(self.dir)
    .. " --logfile " .. quote(self.dir .. "/redis.log") .. " " .. table.concat(extra, " ")
    .. " >/dev/null 2>&1 & echo $!")
  self.pid = tonumber(trim(out))
  for _ = 1, 50 do
    if self:cli("ping") == "PONG" then
      return true
    end
    if not is_alive(self.pid) then
      return false
    end
    servers.sleep(0.1)
  end
  return false
end

function Redis:stop()
  stop_pid(self.pid)
  self.pid = nil
end

-- A redis-server without persistence on a free port; nil, log when it would not start.
-- opts (optional): password (--requirepass, which cli then gives too) and args (a list of more
-- arguments for redis-server, each passed as one word).
function servers.redis(dir, opts)
  opts = opts or {}
  for _ = 1, 5 do
    local redis = setmetatable({ port = servers.free_port(), dir = dir, password = opts.password,
      args = opts.args }, Redis)
    if redis:start() then
      return redis
    end
    redis:stop()
  end
  return nil, support.read(dir .. "/redis.log")
end

---------------------------------------------------------------------------------------------
-- nginx

local Nginx = {}
Nginx.__index = Nginx

function Nginx:url(path)
  return "http://127.0.0.1:" .. self.port .. (path or "/jicoo/webhook")
end

function Nginx:log()
  local file = io.open(self.prefix .. "/logs/error.log", "rb")
  if not file then
    return ""
  end
  local text = file:read("*a")
  file:close()
  return text
end

-- The error-log lines at level error or worse.
function Nginx:error_lines()
  local lines = {}
  for line in self:log():gmatch("[^\n]+") do
    if line:match("%[error%]") or line:match("%[crit%]") or line:match("%[alert%]")
        or line:match("%[emerg%]") then
      lines[#lines + 1] = line
    end
  end
  return lines
end

function Nginx:stop()
  stop_pid(self.pid)
  self.pid = nil
end

-- The environment assignments for nginx's command line.
local function environment(env)
  local parts = {}
  for name, value in pairs(env or {}) do
    parts[#parts + 1] = name .. "=" .. quote(value)
  end
  table.sort(parts)
  return table.concat(parts, " ")
end

-- Starts nginx with the config `render(port, prefix)` returns, in a fresh prefix folder under
-- `dir`; returns the server, or nil and the error log.
function servers.nginx_server(dir, name, render, env)
  local last_log
  for _ = 1, 5 do
    local port = servers.free_port()
    local prefix = dir .. "/" .. name
    sh("rm -rf " .. quote(prefix) .. " && mkdir -p " .. quote(prefix .. "/logs") .. " "
      .. quote(prefix .. "/tmp") .. " " .. quote(prefix .. "/conf"))
    support.write(prefix .. "/conf/nginx.conf", render(port, prefix))
    local out = sh(environment(env) .. " " .. quote(servers.nginx) .. " -p " .. quote(prefix)
      .. " -c conf/nginx.conf 2>&1")
    local server = setmetatable({ port = port, prefix = prefix, start_output = out }, Nginx)
    for _ = 1, 50 do
      local pid_file = io.open(prefix .. "/logs/nginx.pid")
      if pid_file then
        server.pid = tonumber(pid_file:read("*l") or "")
        pid_file:close()
      end
      if server.pid then
        local status = servers.get(server:url("/jicoo/stats"))
        if status ~= "000" then
          return server
        end
      end
      servers.sleep(0.1)
    end
    server:stop()
    last_log = out .. "\n" .. server:log()
    if not last_log:match("Address already in use") then
      break
    end
  end
  return nil, last_log
end

-- nginx.conf for the specs and the nginx benchmark: the example receiver
-- (lua/jicoo/webhook/receiver.lua) under settings the caller picks: workers (2),
-- log_level ("info"), claims_size ("10m"), client_max_body_size ("2m"), client_body_buffer_size
-- ("128k"), and lines of its own: lua_path (prepended to the package path), env (in the main
-- block), http (in the http block), init_worker (after the receiver's), server (in the server
-- block, before the catch-all).
function servers.config(port, opts)
  opts = opts or {}
  local root = servers.root
  local is_root = trim(sh("id -u") or "") == "0"
  local function lines_of(list)
    return table.concat(list or {}, "\n")
  end
  local lines = {
    "load_module " .. servers.NDK_MODULE .. ";",
    "load_module " .. servers.LUA_MODULE .. ";",
    "daemon on;",
    "worker_processes " .. (opts.workers or 2) .. ";",
    "pid logs/nginx.pid;",
    "error_log logs/error.log " .. (opts.log_level or "info") .. ";",
    is_root and "user root;" or "",
    "env JICOO_WEBHOOK_SECRET; env JICOO_HANDLERS; env JICOO_OUTPUT_DIR; env JICOO_REDIS;",
    "env JICOO_ANSWER_FIRST; env JICOO_TEST_SLEEP; env JICOO_JOURNAL_DIR; env JICOO_JOURNAL;",
    "env JICOO_LEASE; env JICOO_RETRY_DELAYS; env JICOO_REDIS_PASSWORD;",
    "env JICOO_JOURNAL_DURABILITY; env JICOO_JOURNAL_MAX_OPEN; env JICOO_ORDERED;",
    "env JICOO_HANDLERS_CHECK; env JICOO_REDIS_SENTINEL_PASSWORD; env JICOO_WEBHOOK_TOLERANCE;",
    "thread_pool jicoo_journal threads=4;",
    "env JICOO_API_KEY; env JICOO_API_URL; env JICOO_SLACK_WEBHOOK_URL; env JICOO_NOTIFY_CHANNEL;",
    "env JICOO_BLOCKED_DOMAINS; env JICOO_RULES_DRY_RUN;",
    lines_of(opts.env),
    "events { worker_connections 1024; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;",
    "  uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;",
    "  lua_package_path \"" .. (opts.lua_path or "") .. root .. "/lua/?.lua;" .. root
      .. "/lua/?/init.lua;;\";",
    "  lua_package_cpath \"" .. servers.core_dir .. "/?.so;;\";",
    "  lua_shared_dict jicoo_claims " .. (opts.claims_size or "10m") .. ";",
    "  lua_shared_dict jicoo_stats 1m;",
    "  lua_shared_dict jicoo_metrics 1m;",
    lines_of(opts.http),
    "  init_by_lua_block { require('jicoo.webhook.receiver').configure() }",
    "  init_worker_by_lua_block { require('jicoo.webhook.receiver').init_worker() " .. (opts.init_worker or "")
      .. " }",
    "  server {",
    "    listen 127.0.0.1:" .. port .. ";",
    "    location = /jicoo/webhook {",
    "      client_max_body_size " .. (opts.client_max_body_size or "2m") .. ";",
    "      client_body_buffer_size " .. (opts.client_body_buffer_size or "128k") .. ";",
    "      error_page 413 = @too_large;",
    "      content_by_lua_block { require('jicoo.webhook.receiver').serve() }",
    "    }",
    "    location = /jicoo/stats { content_by_lua_block { require('jicoo.webhook.receiver').stats() } }",
    "    location = /jicoo/metrics { content_by_lua_block { require('jicoo.webhook.receiver').metrics() } }",
    "    location = /jicoo/health { content_by_lua_block { require('jicoo.webhook.receiver').health() } }",
    "    location @too_large { default_type application/json;",
    "      return 413 '{\"error\":\"too_large\",\"ok\":false}'; }",
    lines_of(opts.server),
    "    location / { return 404; }",
    "  }",
    "}",
  }
  return table.concat(lines, "\n") .. "\n"
end

---------------------------------------------------------------------------------------------
-- The client

-- The header value Jicoo sends, computed by the openssl command line from the file's bytes.
function servers.sign(secret, t, path)
  local out = sh("(printf '%s.' " .. t .. "; cat " .. quote(path) .. ") | openssl dgst -sha256"
    .. " -hmac " .. quote(secret) .. " -r")
  local hex = out:match("^(%x+)")
  assert(hex and #hex == 64, "openssl: " .. tostring(out))
  return "t=" .. t .. ",v1=" .. hex
end

-- Signatures for many files in one openssl run: each file must already hold "t." .. body.
function servers.sign_prefixed(secret, paths)
  local quoted = {}
  for i, path in ipairs(paths) do
    quoted[i] = quote(path)
  end
  local out = sh("openssl dgst -sha256 -hmac " .. quote(secret) .. " -r " .. table.concat(quoted, " "))
  local hexes = {}
  for hex in out:gmatch("(%x+) %*?[^\n]*") do
    if #hex == 64 then
      hexes[#hexes + 1] = hex
    end
  end
  assert(#hexes == #paths, "openssl signed " .. #hexes .. " of " .. #paths .. " files")
  return hexes
end

-- POSTs a file; returns the status (a string, "000" when no answer) and the response body.
function servers.post(url, path, headers)
  local args = {}
  for name, value in pairs(headers or {}) do
    args[#args + 1] = "-H " .. quote(name .. ": " .. value)
  end
  local body_file = os.tmpname()
  local out = sh("curl -s -o " .. quote(body_file) .. " -w '%{http_code}' --max-time 10 "
    .. "-H 'Content-Type: application/json' " .. table.concat(args, " ") .. " --data-binary @"
    .. quote(path) .. " " .. quote(url))
  local body = support.read(body_file)
  os.remove(body_file)
  return trim(out), body
end

function servers.get(url)
  local out = sh("curl -s -o /dev/null -w '%{http_code}' --max-time 2 " .. quote(url))
  return trim(out or "")
end

-- POSTs one file to every url in `urls` at once (curl --parallel, one connection each);
-- returns the list of "<status> <body>" answers.
function servers.post_parallel(urls, path, headers)
  local args = {}
  for name, value in pairs(headers or {}) do
    args[#args + 1] = "-H " .. quote(name .. ": " .. value)
  end
  local out_dir = servers.temp_dir()
  local parts = {}
  for i, url in ipairs(urls) do
    parts[i] = "-o " .. quote(out_dir .. "/" .. i) .. " " .. quote(url)
  end
  local out = sh("curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max "
    .. #urls .. " --max-time 20 -w '%{http_code} %{filename_effective}\\n'"
    .. " -H 'Content-Type: application/json' " .. table.concat(args, " ") .. " --data-binary @"
    .. quote(path) .. " " .. table.concat(parts, " ") .. " 2>/dev/null")
  local answers = {}
  for status, file in out:gmatch("(%d%d%d) ([^\n]+)") do
    answers[#answers + 1] = status .. " " .. support.read(file)
  end
  servers.remove_dir(out_dir)
  return answers
end

---------------------------------------------------------------------------------------------
-- The peers: servers.certificates, tls_nginx, standin, hostile and peak_memory (spec/peers.lua)

require("peers").add_to(servers, sh, trim)

return servers
