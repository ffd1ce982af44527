-- The world of one handler script: its own globals, its own copies of the standard library's
-- tables, read-only views of the library's modules and metatables, no os.exit, no debug hooks,
-- no finalizers; and, for the router, the copy of a delivery each handler but the last gets, so
-- that no handler changes it under the next one. What one Lua state cannot separate (the
-- string metatable's identity, when the collector runs, memory, CPU, nginx's `ngx`, modules
-- outside this library) docs/handlers.md says, with what to do instead.
local type = type
local pairs = pairs
local ipairs = ipairs
local next = next
local error = error
local rawget = rawget
local tostring = tostring
local getmetatable = getmetatable
local setmetatable = setmetatable
local require = require
local load = load
local loadstring = rawget(_G, "loadstring")
local setfenv = rawget(_G, "setfenv")   -- Lua 5.1 and LuaJIT only
local string_byte = string.byte
local string_sub = string.sub
local io_open = io.open
local debug_traceback = debug.traceback
local global_env = _G
local package_loaded = package.loaded

local _M = {}

-- The standard library's tables a script gets a copy of (the ones present in this Lua).
local LIBRARIES = { "string", "table", "math", "os", "io", "coroutine", "utf8", "bit", "bit32" }
-- Globals a script does not get: finalizers on userdata, the collector's switches, and the
-- functions that reach another function's environment (the real globals among them).
local WITHHELD = { newproxy = true, debug = true, collectgarbage = true, getfenv = true,
  setfenv = true }

---------------------------------------------------------------------------------------------
-- Read-only views

local PROTECTED = setmetatable({}, { __mode = "k" })   -- metatables scripts may not change
local views = setmetatable({}, { __mode = "k" })       -- table -> its view

local function refuse_write(_, key)
  error("cannot change the library's " .. tostring(key) .. " from a handler script", 2)
end

-- Whether t is a plain list (no metatable, keys 1..n): handed out as a copy, since a view's
-- length and ipairs are not the list's under Lua 5.1 and LuaJIT.
local function is_list(t)
  if getmetatable(t) ~= nil then
    return false
  end
  local n = #t
  for key in pairs(t) do
    if type(key) ~= "number" or key < 1 or key > n or key % 1 ~= 0 then
      return false
    end
  end
  return n > 0
end

local view

local function viewed(value)
  if type(value) ~= "table" then
    return value
  end
  if is_list(value) then
    local copy = {}
    for i = 1, #value do
      copy[i] = viewed(value[i])
    end
    return copy
  end
  return view(value)
end

-- A read-only view of t: reads see t (tables inside as views too), writes raise.
view = function(t)
  local existing = views[t]
  if existing then
    return existing
  end
  local seen = {}
  local proxy = setmetatable({}, {
    __index = function(_, key)
      local value = seen[key]
      if value == nil then
        value = viewed(t[key])
        if type(value) == "table" then
          seen[key] = value
        end
      end
      return value
    end,
    __newindex = refuse_write,
    __call = function(_, ...) return t(...) end,
    __tostring = function() return tostring(t) end,
    __pairs = function()
      return function(_, key)
        local k, v = next(t, key)
        return k, viewed(v)
      end, t, nil
    end,
    __metatable = false,
  })
  views[t] = proxy
  return proxy
end
_M.view = view

-- Marks a metatable of the library's (the typed tables', ctx's): a script's getmetatable sees a
-- view of it, and its setmetatable cannot replace it.
function _M.protect(mt)
  PROTECTED[mt] = true
  return mt
end

PROTECTED[getmetatable("")] = true
for _, mt in pairs(require("jicoo.webhook.core").metatables) do
  PROTECTED[mt] = true
end

local function script_getmetatable(value)
  local mt = getmetatable(value)
  if type(mt) == "table" and PROTECTED[mt] then
    return view(mt)
  end
  return mt
end

local function script_setmetatable(t, mt)
  local current = getmetatable(t)
  if type(current) == "table" and PROTECTED[current] then
    error("setmetatable: a handler script cannot change a library table's metatable", 2)
  elseif type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: a handler script cannot set a finalizer (__gc): it would run whenever"
      .. " the collector decides, in someone else's code", 2)
  end
  return setmetatable(t, mt)
end

---------------------------------------------------------------------------------------------
-- A script's environment

local function copy(t)
  local c = {}
  for k, v in pairs(t) do
    c[k] = v
  end
  return c
end

local function exit_refused()
  error("os.exit: a handler script cannot end the process (raise an error, or return nil,"
    .. " message, to fail the delivery)", 2)
end

-- Compiles source as a chunk of env (text only).
local function compile(source, chunk_name, env)
  if string_byte(source, 1) == 27 then
    return nil, string_sub(chunk_name, 2) .. ": binary chunks are not accepted"
  end
  if setfenv then
    local fn, err = loadstring(source, chunk_name)
    if not fn then
      return nil, err
    end
    setfenv(fn, env)
    return fn
  end
  return load(source, chunk_name, "t", env)
end
_M.compile = compile

-- The names a script's world makes itself, which extra globals may not replace.
local OWN = { _G = true, SCRIPT_DIR = true, require = true, package = true, load = true,
  loadstring = true, loadfile = true, dofile = true, getmetatable = true, setmetatable = true }
for _, name in ipairs(LIBRARIES) do
  OWN[name] = true
end
for name in pairs(WITHHELD) do
  OWN[name] = true
end

-- Whether extra (a table of globals to add to every script's world, such as the `ngx` stand-in
-- of jicoo-webhook run) may be given: true, or nil and why.
function _M.check_extra(extra)
  if type(extra) ~= "table" then
    return nil, "env must be a table of globals, got " .. type(extra)
  end
  for name in pairs(extra) do
    if type(name) ~= "string" then
      return nil, "env's keys must be global names, got a " .. type(name)
    elseif OWN[name] then
      return nil, "env cannot give '" .. name .. "': a script's world makes its own"
    end
  end
  return true
end

-- The globals of a script in script_dir (SCRIPT_DIR, ending in "/"): a table of its own whose
-- metatable cannot be read or replaced, holding copies of the real globals as they are now,
-- and extra's globals (checked by check_extra: given as they are, shared by every script).
function _M.environment(script_dir, extra)
  local env = {}
  for name, value in pairs(global_env) do
    if not WITHHELD[name] then
      env[name] = value
    end
  end
  for name, value in pairs(extra or {}) do
    env[name] = value
  end
  for _, name in ipairs(LIBRARIES) do
    local library = rawget(global_env, name)
    if type(library) == "table" then
      env[name] = copy(library)
    end
  end
  env.os.exit = exit_refused
  env.debug = { traceback = debug_traceback }
  env.getmetatable = script_getmetatable
  env.setmetatable = script_setmetatable
  env._G = env
  env.SCRIPT_DIR = script_dir

  -- require: the standard libraries as this script has them, the library's modules as
  -- read-only views, anything else as it is (shared: docs/handlers.md)
  local loaded = { _G = env }
  for _, name in ipairs(LIBRARIES) do
    loaded[name] = env[name]
  end
  loaded.debug = env.debug
  local function script_require(name)
    local own = loaded[name]
    if own ~= nil then
      return own
    end
    local module = require(name)
    if type(name) == "string" and string_sub(name, 1, 6) == "jicoo." and type(module) == "table" then
      module = view(module)
    end
    return module
  end
  env.require = script_require
  local package = copy(rawget(global_env, "package") or {})
  package.loaded = setmetatable({}, {
    __index = function(_, name)
      local own = loaded[name]
      if own ~= nil then
        return own
      end
      local module = package_loaded[name]
      if type(name) == "string" and string_sub(name, 1, 6) == "jicoo." and type(module) == "table" then
        return view(module)
      end
      return module
    end,
    __newindex = function(_, name, value) loaded[name] = value end,
    __metatable = false,
  })
  env.package = package

  -- chunks a script loads run in its world too
  env.load = function(chunk, chunk_name, mode, chunk_env)
    if type(chunk) ~= "string" then
      return nil, "load: a handler script loads text only"
    end
    if mode ~= nil and mode ~= "t" then
      return nil, "load: binary chunks are not accepted"
    end
    return compile(chunk, chunk_name or "=(load)", chunk_env or env)
  end
  if loadstring then
    env.loadstring = function(source, chunk_name)
      return compile(source, chunk_name or "=(loadstring)", env)
    end
  end
  env.loadfile = function(path)
    local file, err = io_open(path, "rb")
    if not file then
      return nil, err
    end
    local source = file:read("*a")
    file:close()
    return compile(source or "", "@" .. path, env)
  end
  env.dofile = function(path)
    local fn, err = env.loadfile(path)
    if not fn then
      error(err, 2)
    end
    return fn()
  end
  return setmetatable(env, { __metatable = false })
end

---------------------------------------------------------------------------------------------
-- The delivery each handler gets

-- A copy of a typed delivery, its tables copied with their metatables (the methods), so that
-- what one handler changes the next does not see.
local function copy_delivery(value)
  if type(value) ~= "table" then
    return value
  end
  local c = {}
  for k, v in pairs(value) do
    c[k] = copy_delivery(v)
  end
  return setmetatable(c, getmetatable(value))
end
_M.copy_delivery = copy_delivery

return _M
