-- Handler scripts: a folder's dir/<event>.lua (handlers for that event), dir/any.lua (every
-- event) and dir/dead_letter.lua (the dead-letter alarm: router:on_dead), each returning a
-- function or a list of functions, each run in an environment of its own. Files whose name
-- starts with "_" or "." are left alone (helpers, editor files).
local getmetatable = getmetatable
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local rawget = rawget
local xpcall = xpcall
local traceback = debug.traceback
local string_match = string.match
local string_sub = string.sub
local table_insert = table.insert
local table_sort = table.sort
local table_concat = table.concat

local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.payload.types"
local sandbox = require "jicoo.webhook.router.sandbox"

local _M = {}

local KNOWN_EVENTS = {}
for _, name in ipairs(types.EVENTS) do
  KNOWN_EVENTS[name] = true
end

function _M.is_callable(f)
  if type(f) == "function" then
    return true
  end
  local mt = getmetatable(f)
  return type(mt) == "table" and type(rawget(mt, "__call")) == "function"
end
local is_callable = _M.is_callable

function _M.message_handler(err)
  return traceback(tostring(err), 2)
end

-- A handler's or an alarm's call, as xpcall gave it, judged by Lua's own convention: it failed
-- when it raised, or returned nil, message or false[, message]. true, or false and the error
-- (the message, or "returned false").
function _M.outcome(ok, result, message)
  if ok and (result == false or (result == nil and message ~= nil)) then
    return false, message ~= nil and tostring(message) or "returned " .. tostring(result)
  end
  return ok, result
end

-- The list of handler functions one script file returns, or nil, err.
local function run_script(path, script_dir, extra)
  local source, read_err = core.file_read(path)
  if not source then
    return nil, read_err
  end
  local chunk, compile_err = sandbox.compile(source, "@" .. path, sandbox.environment(script_dir, extra))
  if not chunk then
    return nil, compile_err
  end
  local ok, result = xpcall(chunk, _M.message_handler)
  if not ok then
    return nil, result
  end
  if is_callable(result) then
    return { result }
  end
  if type(result) == "table" then
    local list = {}
    for i = 1, #result do
      if not is_callable(result[i]) then
        return nil, path .. ": item " .. i .. " of the returned list is a " .. type(result[i])
          .. ", expected a function"
      end
      list[i] = result[i]
    end
    local keys = 0
    for _ in pairs(result) do
      keys = keys + 1
    end
    if keys ~= #result then
      return nil, path .. ": returns a table with keys other than 1.." .. #result
        .. ", expected a list of functions"
    end
    return list
  end
  return nil, path .. ": returns " .. type(result) .. ", expected a function or a list of functions"
end

-- The scripts of a folder, any.lua first (its handlers run before the per-event ones): a list
-- of { path, event ("*" for any.lua), alarm = true (dead_letter.lua), handlers = { fn, ... } or
-- error = message, unknown = true for an event name Jicoo does not send }; or nil, err when
-- the folder cannot be listed. extra: globals added to every script's world
-- (sandbox.check_extra).
function _M.load(dir, extra)
  local listing, list_err = core.file_list(dir)
  if not listing then
    return nil, list_err
  end
  local names = {}
  for name in pairs(listing) do
    names[#names + 1] = name
  end
  table_sort(names)
  local prefix = string_sub(dir, -1) == "/" and dir or dir .. "/"
  local scripts = {}
  for _, name in ipairs(names) do
    local event = string_match(name, "^([%w][%w_%-]*)%.lua$")
    if event == "any" then
      table_insert(scripts, 1, { path = prefix .. name, event = "*" })
    elseif event == "dead_letter" then
      scripts[#scripts + 1] = { path = prefix .. name, alarm = true }
    elseif event then
      scripts[#scripts + 1] = { path = prefix .. name, event = event,
        unknown = not KNOWN_EVENTS[event] or nil }
    end
  end
  for _, script in ipairs(scripts) do
    script.handlers, script.error = run_script(script.path, prefix, extra)
  end
  return scripts
end

-- What the folder's Lua files are now (names and contents, helpers included), as one string:
-- two stamps differ when a script was edited, added or removed. Reads files, so inside nginx it
-- runs in the thread pool (ngx.run_worker_thread(pool, "jicoo.webhook.router.scripts",
-- "stamp", dir)). nil, err when the folder cannot be listed.
function _M.stamp(dir)
  local listing, err = core.file_list(dir)
  if not listing then
    return nil, err
  end
  local names = {}
  for name in pairs(listing) do
    if string_match(name, "%.lua$") then
      names[#names + 1] = name
    end
  end
  table_sort(names)
  local prefix = string_sub(dir, -1) == "/" and dir or dir .. "/"
  local parts = {}
  for i, name in ipairs(names) do
    local source, read_err = core.file_read(prefix .. name)
    parts[i] = name .. "\0" .. (source or "unreadable: " .. tostring(read_err))
  end
  return table_concat(parts, "\0\0")
end

return _M
