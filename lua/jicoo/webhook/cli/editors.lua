-- jicoo-webhook annotations: where the Lua Language Server addon is (docs/lua-language-server in
-- a checkout; PREFIX/share/jicoo-webhook/lua-language-server after the CMake install, the same
-- under the rock's folder after `luarocks make`), and the .luarc.json lines that use it.
local ipairs = ipairs
local io_open = io.open
local io_popen = io.popen
local package_path = package.path
local string_match = string.match
local string_sub = string.sub
local string_gsub = string.gsub
local os_getenv = os.getenv

local cli_io = require "jicoo.webhook.cli.io"

local _M = {}

local ADDON = "/share/jicoo-webhook/lua-language-server"

local function exists(path)
  local file = io_open(path, "rb")
  if file then
    file:close()
    return true
  end
  return false
end

-- The folder that holds jicoo/webhook/*.lua, as Lua found this module.
local function lua_dir()
  local source = debug.getinfo(1, "S").source
  return string_match(source, "^@(.*)/jicoo/webhook/cli/editors%.lua$")
    or string_match(package_path, "([^;]*)/%?%.lua")
end

-- The addon's folder, or nil: beside a checkout's lua/, under the prefix of a CMake install
-- (PREFIX/share/lua/5.x), or in a LuaRocks tree's rock folder.
function _M.addon_dir()
  local lib = lua_dir()
  if not lib then
    return nil
  end
  local checkout = string_match(lib, "^(.*)/lua$") or (lib == "lua" and ".") or lib
  local candidates = { checkout .. "/docs/lua-language-server" }
  local prefix = string_match(lib, "^(.*)/share/lua/[%d.]+$")
  if prefix then
    candidates[#candidates + 1] = prefix .. ADDON
    local rocks = io_popen("ls -d " .. prefix .. "/lib/luarocks/rocks-*/jicoo-webhook/*/"
      .. " 2>/dev/null")
    for rock in rocks:read("*a"):gmatch("[^\n]+") do
      candidates[#candidates + 1] = rock:gsub("/$", "") .. ADDON
    end
    rocks:close()
  end
  for _, dir in ipairs(candidates) do
    if exists(dir .. "/config.json") then
      if string_sub(dir, 1, 1) ~= "/" then   -- found through a relative LUA_PATH
        local pwd = os_getenv("PWD")
        dir = pwd and pwd .. "/" .. string_gsub(dir, "^%./", "") or dir
      end
      return dir
    end
  end
  return nil
end

function _M.run()
  local dir = _M.addon_dir()
  if not dir then
    cli_io.err("jicoo-webhook annotations: the Lua Language Server addon is not installed beside"
      .. " this copy of the library (a checkout has it in docs/lua-language-server)")
    return cli_io.EXIT_FAILURE
  end
  cli_io.out(dir)
  cli_io.out("")
  cli_io.out("In a .luarc.json beside your handler scripts:")
  cli_io.out('{ "workspace.library": ["', dir, '/library"], "runtime.version": "LuaJIT",')
  cli_io.out('  "diagnostics.globals": ["ngx"] }')
  return cli_io.EXIT_OK
end

return _M
