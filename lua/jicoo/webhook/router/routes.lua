-- Registration: the handlers a router runs, each under a label (router:on, router:load for a
-- folder of handler scripts), the functions told of failures (router:on_error) and the
-- dead-letter alarms (router:on_dead). The receive path that runs them is router/init.lua.
local type = type
local ipairs = ipairs
local tostring = tostring
local error = error
local debug_getinfo = debug.getinfo
local table_concat = table.concat

local scripts = require "jicoo.webhook.router.scripts"
local sandbox = require "jicoo.webhook.router.sandbox"
local options = require "jicoo.webhook.options"

local _M = {}

local is_callable = scripts.is_callable

local function describe_function(fn)
  if type(fn) == "function" then
    local info = debug_getinfo(fn, "S")
    if info and info.short_src and info.linedefined and info.linedefined > 0 then
      return info.short_src .. ":" .. info.linedefined
    end
  end
  return tostring(fn)
end

-- A route's label names its handler in logs, answers and the journal, which records by label
-- the handlers that succeeded for a delivery: labels are unique in a router (a second handler
-- registered from the same line gets "#2"), and the same registrations give the same labels.
local function add_route(self, name, fn, label)
  local routes = self.routes
  local seen = self.label_counts[label]
  self.label_counts[label] = (seen or 0) + 1
  if seen then
    label = label .. "#" .. (seen + 1)
  end
  routes[#routes + 1] = { event = name, fn = fn, label = label }
  -- the position of each event name's last route ("*" too): what the router's dispatch reads
  -- on a delivery's first attempt, rather than a loop over the routes
  routes.last_of = routes.last_of or {}
  routes.last_of[name] = #routes
end

-- Registers fn(ev, ctx) for one event name, or for every event with "*".
function _M.on(self, name, fn)
  if type(name) ~= "string" or name == "" then
    error("router:on: event name must be a non-empty string", 2)
  end
  if not is_callable(fn) then
    error("router:on: handler must be a function, got " .. type(fn), 2)
  end
  add_route(self, name, fn, name .. " handler at " .. describe_function(fn))
  return self
end

-- Registers fn(message, ev, ctx), called when a handler raises or the journal fails.
function _M.on_error(self, fn)
  if not is_callable(fn) then
    error("router:on_error: handler must be a function, got " .. type(fn), 2)
  end
  local handlers = self.error_handlers
  handlers[#handlers + 1] = fn
  return self
end

-- Registers fn(dead, ctx), called once when a delivery runs out of attempts (alarm.lua).
function _M.on_dead(self, fn, label)
  if not is_callable(fn) then
    error("router:on_dead: alarm must be a function, got " .. type(fn), 2)
  end
  local alarms = self.dead_handlers
  alarms[#alarms + 1] = { fn = fn, label = label or "dead-letter alarm at " .. describe_function(fn) }
  return self
end

-- load's and reload's options: env, globals added to every script's world (sandbox.lua).
local LOAD_OPTIONS = options.schema("router:load", {
  { "env", "table", check = sandbox.check_extra,
    what = "a table of global names (not one a script's world makes itself: _G, require, ...)" },
})

-- Registers the handler scripts of dir (scripts.lua). Returns the number of handlers
-- registered, or nil, message, failures when the folder cannot be read or holds no script, or
-- when some script failed: the scripts that did load
-- stay registered (one bad script never stops the others), and each broken one is replaced by
-- a handler that fails with its error, so that the deliveries it would have handled are
-- journaled as failed, retried, and run it once it is fixed. options.env: globals added to
-- every script's world (jicoo-webhook run gives its `ngx` stand-in this way).
function _M.load(self, dir, opts)
  if type(dir) ~= "string" or dir == "" then
    error("router:load: dir must be a non-empty string", 2)
  end
  local extra = LOAD_OPTIONS:check(opts, 2).env
  local loaded, list_err = scripts.load(dir, extra)
  if loaded and #loaded == 0 then
    list_err, loaded = dir .. ": no handler scripts (<event>.lua or any.lua) in this folder", nil
  end
  if not loaded then
    -- Loading nothing is a failure too: deliveries would be answered as handled with no work.
    return nil, list_err, { { file = dir, message = list_err } }
  end
  local registered, failures, lines = 0, {}, {}
  for _, script in ipairs(loaded) do
    if script.alarm and script.handlers then
      for i, fn in ipairs(script.handlers) do
        _M.on_dead(self, fn, #script.handlers > 1 and script.path .. "#" .. i or script.path)
      end
    elseif script.handlers then
      if script.unknown then
        self.log("warn", script.path .. ": '" .. script.event .. "' is not a known Jicoo event;"
          .. " its handlers run only if Jicoo sends that event name")
      end
      for i, fn in ipairs(script.handlers) do
        add_route(self, script.event, fn, #script.handlers > 1 and script.path .. "#" .. i
          or script.path)
        registered = registered + 1
      end
    elseif script.alarm then
      -- no alarm to raise: said now, and on every dead letter by the log line that names it
      failures[#failures + 1] = { file = script.path, message = script.error }
      lines[#lines + 1] = script.error
    else
      local message = "the script did not load: " .. tostring(script.error)
      add_route(self, script.event, function() error(message, 0) end, script.path)
      failures[#failures + 1] = { file = script.path, message = script.error }
      lines[#lines + 1] = script.error
    end
  end
  if #failures > 0 then
    return nil, table_concat(lines, "\n"), failures
  end
  return registered
end

-- router:reload(dirs, options): the handlers of these folders in place of the ones registered before
-- (router:on's as well), loaded apart and swapped in whole, so that a delivery being handled
-- finishes with the handlers it began with. Returns what load returns, over every folder:
-- the handlers registered, or nil, message, failures (also router.script_failures, which
-- router:health names).
function _M.reload(self, dirs, opts)
  LOAD_OPTIONS:check(opts, 2, nil, "router:reload")
  local fresh = { routes = {}, label_counts = {}, dead_handlers = {}, log = self.log }
  local registered, messages, failures = 0, {}, {}
  for _, dir in ipairs(dirs) do
    local count, err, problems = _M.load(fresh, dir, opts)
    registered = registered + (count or 0)
    if not count then
      messages[#messages + 1] = err
      for _, problem in ipairs(problems or {}) do
        failures[#failures + 1] = problem
      end
    end
  end
  self.routes, self.label_counts, self.dead_handlers = fresh.routes, fresh.label_counts,
    fresh.dead_handlers
  self.script_failures = failures   -- health names them
  if #messages > 0 then
    return nil, table_concat(messages, "\n"), failures
  end
  return registered
end

return _M
