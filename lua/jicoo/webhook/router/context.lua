-- The `ctx` a handler gets with each delivery: the request as received, the delivery's key and
-- attempt, the router's config, ctx:setting, ctx.log, and ctx.http.
local setmetatable = setmetatable
local rawset = rawset
local select = select
local tostring = tostring
local string_format = string.format
local os_getenv = os.getenv
local require = require

local _M = {}

-- The logger handed to handlers as ctx.log: ctx.log("fmt", ...) logs at info level;
-- ctx.log.debug/info/warn/error(fmt, ...) pick the level. Messages are prefixed with the
-- handler that wrote them. The logger and its levels are callable tables, not closures: LuaJIT
-- cannot compile the creation of a closure, and a handler that logs runs on every delivery
-- (spec/jit_spec.lua fails on such an abort).
local function log_emit(logger, level, fmt, ...)
  local message
  if select("#", ...) > 0 then
    message = string_format(fmt, ...)
  else
    message = tostring(fmt)
  end
  local handler = logger.ctx.handler
  if handler then
    message = handler .. ": " .. message
  end
  logger.sink(level, message)
end

local level_meta = {
  __call = function(self, fmt, ...)
    log_emit(self.logger, self.level, fmt, ...)
  end,
}

local LEVELS = { debug = true, info = true, warn = true, error = true }

-- ctx.log.<level> is made the first time a handler names it: most handlers only call ctx.log.
local logger_meta = {
  __call = function(self, fmt, ...)
    log_emit(self, "info", fmt, ...)
  end,
  __index = function(self, name)
    if not LEVELS[name] then
      return nil
    end
    local level = setmetatable({ logger = self, level = name }, level_meta)
    rawset(self, name, level)
    return level
  end,
}

local function new_logger(sink, ctx)
  local logger = setmetatable({ sink = sink, ctx = ctx }, logger_meta)
  return logger   -- not a tail call of a built-in (spec/jit_trace.lua)
end

-- ctx:setting(name, env_name, default): a handler's setting from ctx.config (the router's
-- config, or `jicoo-webhook run --set NAME=VALUE`), else the environment variable env_name,
-- else default; an empty value counts as unset.
local function setting(ctx, name, env_name, default)
  local value = ctx.config[name]
  if (value == nil or value == "") and env_name then
    value = os_getenv(env_name)
  end
  if value == nil or value == "" then
    value = default
  end
  return value
end

-- The metatable of one router's contexts: ctx.log writes to sink(level, message), made the
-- first time a handler reads it (most deliveries never log); ctx.http is the router's transport
-- (opts.http), by default jicoo.net.http's request, loaded the first time a handler asks.
function _M.new_meta(sink, transport)
  return {
    __index = function(ctx, name)
      if name == "log" then
        local logger = new_logger(sink, ctx)
        rawset(ctx, "log", logger)
        return logger
      elseif name == "setting" then
        return setting
      elseif name == "http" then
        transport = transport or require("jicoo.net.http").request
        return transport
      end
      return nil
    end,
  }
end

-- A delivery's ctx: headers and body as received (a retry has the body, not the headers),
-- when it was first received, its key, its attempt (1, 2, ...), the router's config, and its
-- source: "webhook" (signed, received), or "reconcile" set by router/reconcile.lua. (Kept in a
-- local before it is returned: LuaJIT gives up on a trace that begins here and ends in a tail
-- call of a built-in, as inside nginx, and the function would run in the interpreter.)
function _M.new(meta, key, body, headers, received_at, attempt, config)
  local ctx = setmetatable({
    headers = headers,
    body = body,
    received_at = received_at,
    key = key,
    config = config,
    attempt = attempt,
    source = "webhook",
  }, meta)
  return ctx
end

return _M
