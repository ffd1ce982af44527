-- jicoo-webhook nginx PREFIX: a runnable nginx setup of the receiver for this installation or
-- checkout: PREFIX/conf/nginx.conf (nginx_conf.lua) with this installation's paths, and the
-- folders nginx and its workers write (logs, tmp, journal, out). Started by root, nginx runs its
-- workers as nobody: the folders they write are theirs, and PREFIX can be walked into.
local ipairs = ipairs
local tostring = tostring
local string_match = string.match
local string_gsub = string.gsub
local string_find = string.find
local package_searchpath = package.searchpath
local os_execute = os.execute

local cli_io = require "jicoo.webhook.cli.io"
local nginx_conf = require "jicoo.webhook.nginx.conf"

local out, err_out = cli_io.out, cli_io.err
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

local WORKER_USER = "nobody nogroup"

local function quote(s)
  return "'" .. string_gsub(s, "'", "'\\''") .. "'"
end

local function exists(path)
  local core = require "jicoo.webhook.core"
  return core.file_read(path) ~= nil or core.file_list(path) ~= nil
end

-- path made absolute (nginx starts in its prefix, not here).
local function absolute(path)
  if not path or string_match(path, "^/") then
    return path
  end
  local pipe = io.popen("pwd")
  local cwd = pipe:read("*l")
  pipe:close()
  return cwd .. "/" .. string_gsub(path, "^%./", "")
end

-- The folder holding jicoo/webhook/*.lua: where this module was loaded from.
local function lua_dir()
  local source = debug.getinfo(1, "S").source
  return absolute(string_match(source, "^@(.*)/jicoo/webhook/cli/nginx%.lua$"))
end

-- The folder holding jicoo/webhook/core.so built for LuaJIT (nginx's Lua), or nil.
local function luajit_core_dir(lib)
  local candidates = {}
  if rawget(_G, "jit") and package_searchpath then
    local found = package_searchpath("jicoo.webhook.core", package.cpath)
    if found then
      candidates[#candidates + 1] = absolute(string_match(found, "^(.*)/jicoo/webhook/core%.so$"))
    end
  end
  local checkout = string_match(lib, "^(.*)/lua$")
  if checkout then
    candidates[#candidates + 1] = checkout .. "/build/luajit"
  end
  candidates[#candidates + 1] = "/usr/local/lib/lua/5.1"               -- luarocks --lua-version 5.1
  for _, dir in ipairs(candidates) do
    if dir and exists(dir .. "/jicoo/webhook/core.so") then
      return dir
    end
  end
  return nil
end

-- Whether the workers' user passes a shell test on path (`test -r`, `test -w`, ...).
local function workers_can(test, path)
  local user = string_match(WORKER_USER, "^(%S+)")
  local status = os_execute("runuser -u " .. user .. " -- sh -c " .. quote(test) .. " sh "
    .. quote(path) .. " >/dev/null 2>&1")
  return status == true or status == 0   -- 5.2+: true; 5.1 and LuaJIT: the exit status
end

-- The first of paths the workers' user cannot read (a file) or enter and list (a folder), or
-- nil; e.g. a checkout under /root, which nobody can enter.
local function unreadable_by_workers(paths)
  for _, path in ipairs(paths) do
    if not workers_can('test -r "$1" && { test -f "$1" || test -x "$1"; }', path) then
      return path
    end
  end
  return nil
end

-- The name servers /etc/resolv.conf lists (IPv6 ones in brackets, as nginx wants them).
local function system_resolvers()
  local list = {}
  local file = io.open("/etc/resolv.conf", "rb")
  if file then
    for line in file:lines() do
      local address = string_match(line, "^%s*nameserver%s+([%x:.]+)")
      if address then
        list[#list + 1] = string_find(address, ":", 1, true) and "[" .. address .. "]" or address
      end
    end
    file:close()
  end
  return list
end

function _M.run(args)
  local core = require "jicoo.webhook.core"
  local prefix = string_gsub(args.prefix, "/+$", "")
  if not string_match(prefix, "^/") then
    return EXIT_USAGE, "PREFIX must be an absolute path, got " .. args.prefix
  end
  local lib = lua_dir()
  local core_dir = absolute(args.core) or (lib and luajit_core_dir(lib))
  if not core_dir or not exists(core_dir .. "/jicoo/webhook/core.so") then
    return EXIT_USAGE, "cannot find jicoo/webhook/core.so built for LuaJIT: give --core DIR (a"
      .. " checkout's build/luajit, or the tree of `LUAROCKS_CONFIG=rockspec/luajit.lua luarocks"
      .. " --lua-version 5.1 make`: nginx runs LuaJIT, an install for Lua 5.4 alone cannot serve)"
  end
  local handlers = args.handlers
  if #handlers == 0 then
    local examples = (string_match(lib, "^(.*)/lua$") or lib) .. "/examples"
    if exists(examples .. "/openresty/handlers") then
      handlers = nginx_conf.example_handlers(examples)
    else
      return EXIT_USAGE, "--handlers DIR is required (no examples/ folder beside this installation)"
    end
  end
  local is_root = string_match(tostring(io.popen("id -u"):read("*l")), "^0$") ~= nil
  if is_root then
    local needed = { lib .. "/jicoo/webhook/receiver.lua", core_dir .. "/jicoo/webhook/core.so" }
    for _, folder in ipairs(handlers) do
      needed[#needed + 1] = folder
    end
    local unreadable = unreadable_by_workers(needed)
    if unreadable then
      err_out("jicoo-webhook nginx: started by root, nginx runs its workers as nobody, who cannot"
        .. " read " .. unreadable .. ": put the checkout or the handlers where nobody can read"
        .. " them (chmod o+rX on each folder above them), or run nginx as another user")
      return EXIT_FAILURE
    end
  end
  for _, folder in ipairs({ prefix, prefix .. "/conf", prefix .. "/logs", prefix .. "/tmp",
      prefix .. "/journal", prefix .. "/out" }) do
    -- the journal holds guests' data: its folder is its owner's alone
    local ok, err = core.file_mkdir(folder, folder == prefix .. "/journal" and 448 or 493)
    if not ok then
      err_out("jicoo-webhook nginx: ", err)
      return EXIT_FAILURE
    end
  end
  local conf = nginx_conf.render({ lua_dir = lib, core_dir = core_dir, handlers = handlers,
    listen = args.listen, workers = args.workers, user = is_root and WORKER_USER or nil,
    resolvers = system_resolvers() })
  local ok, err = core.file_replace(prefix .. "/conf/nginx.conf", conf)
  if not ok then
    err_out("jicoo-webhook nginx: ", err)
    return EXIT_FAILURE
  end
  if is_root then
    -- the workers (nobody) write the journal and the automations' files, and walk to them
    os_execute("chmod 755 " .. quote(prefix) .. " && chown nobody:nogroup " .. quote(prefix
      .. "/journal") .. " " .. quote(prefix .. "/out"))
    for _, folder in ipairs({ prefix .. "/journal", prefix .. "/out" }) do
      if not workers_can('test -w "$1" && test -x "$1"', folder) then
        err_out("jicoo-webhook nginx: started by root, nginx runs its workers as nobody, who"
          .. " cannot reach " .. folder .. ": a folder above PREFIX is closed to others (chmod"
          .. " o+x on it), or pick a PREFIX such as /var/tmp/jicoo")
        return EXIT_FAILURE
      end
    end
  end
  out("wrote ", prefix, "/conf/nginx.conf (listen ", args.listen, ", handlers: ",
    table.concat(handlers, ", "), ")")
  out("start:  JICOO_WEBHOOK_SECRET=... nginx -p ", prefix, " -c conf/nginx.conf")
  out("send:   jicoo-webhook send http://", args.listen, nginx_conf.WEBHOOK_PATH, " FILE...")
  out("stop:   kill $(cat ", prefix, "/logs/nginx.pid)")
  out("journal: jicoo-webhook deliveries list --journal ", prefix, "/journal")
  out("health: curl http://", args.listen, "/jicoo/health   (metrics: /jicoo/metrics)")
  return EXIT_OK
end

return _M
