-- The receive path for one delivery: size check, verify, parse, claim (exactly once), dispatch
-- to Lua handlers, and the HTTP answer. Handlers always run here, in Lua, never from C.

local setmetatable = setmetatable
local getmetatable = getmetatable
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local error = error
local select = select
local pcall = pcall
local xpcall = xpcall
local rawget = rawget
local require = require
local setfenv = rawget(_G, "setfenv")   -- Lua 5.1 and LuaJIT only
local loadstring = rawget(_G, "loadstring") or load
local load = load
local traceback = debug.traceback
local debug_getinfo = debug.getinfo
local string_format = string.format
local string_lower = string.lower
local string_byte = string.byte
local string_gsub = string.gsub
local string_match = string.match
local string_find = string.find
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort
local table_insert = table.insert
local math_floor = math.floor
local math_huge = math.huge
local io_open = io.open
local io_popen = io.popen
local io_stderr = io.stderr
local os_time = os.time
local os_getenv = os.getenv
local global_env = _G

local store = require "jicoo.webhook.store"
local core = require "jicoo.webhook.core"

local _M = {}

local SIGNATURE_HEADER = "jicoo-webhook-signature"
local ANY = "*"

-- The router's own options; every parse option (the limits included) is passed on to parse.
local OPTION_NAMES = {
  secrets = true, tolerance = true, verify = true,
  store = true, ttl = true, now = true, log = true, config = true,
}
local PARSE_OPTION_NAMES = { "level", "unknown_keys", "null" }
for name in pairs(core.limits) do
  PARSE_OPTION_NAMES[#PARSE_OPTION_NAMES + 1] = name
end
for _, name in ipairs(PARSE_OPTION_NAMES) do
  OPTION_NAMES[name] = true
end

-- The facade is required lazily: it exposes webhook.router, so requiring it while this module
-- loads could form a require loop.
local webhook

local Router = {}
Router.__index = Router

---------------------------------------------------------------------------------------------
-- A tiny JSON writer for the flat response documents (no dependency on cjson).

local JSON_ESCAPES = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function escape_char(c)
  return JSON_ESCAPES[c] or string_format("\\u%04x", string_byte(c))
end

-- Length of the strict UTF-8 sequence (shortest form, no surrogates, up to U+10FFFF) that
-- starts at byte i, or nil when the byte there starts none.
local function utf8_sequence_length(s, i)
  local c = string_byte(s, i)
  if c < 0x80 then
    return 1
  end
  local extra, code, min
  if c >= 0xC2 and c <= 0xDF then
    extra, code, min = 1, c - 0xC0, 0x80
  elseif c >= 0xE0 and c <= 0xEF then
    extra, code, min = 2, c - 0xE0, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then
    extra, code, min = 3, c - 0xF0, 0x10000
  else
    return nil
  end
  for j = i + 1, i + extra do
    local b = string_byte(s, j)
    if not b or b < 0x80 or b > 0xBF then
      return nil
    end
    code = code * 64 + (b - 0x80)
  end
  if code < min or code > 0x10FFFF or (code >= 0xD800 and code <= 0xDFFF) then
    return nil
  end
  return extra + 1
end

-- Response bodies must be valid JSON: a message quoting broken input gets U+FFFD for each
-- byte that is not part of a valid UTF-8 sequence.
local function valid_utf8(s)
  if not string_find(s, "[\128-\255]") then
    return s
  end
  local parts, i, n = {}, 1, #s
  while i <= n do
    local length = utf8_sequence_length(s, i)
    if length then
      parts[#parts + 1] = string_sub(s, i, i + length - 1)
      i = i + length
    else
      parts[#parts + 1] = "\239\191\189"
      i = i + 1
    end
  end
  return table_concat(parts)
end

local function json_string(s)
  if not string_find(s, '[%c"\\\128-\255]') then -- most strings: nothing to escape or repair
    return '"' .. s .. '"'
  end
  return '"' .. string_gsub(valid_utf8(s), '[%c"\\]', escape_char) .. '"'
end

local function json_value(v)
  local kind = type(v)
  if kind == "string" then
    return json_string(v)
  elseif kind == "boolean" then
    return v and "true" or "false"
  elseif kind == "number" then
    if v ~= v or v == math_huge or v == -math_huge then
      return "null"
    elseif v == math_floor(v) and v > -2^53 and v < 2^53 then
      return string_format("%d", v)
    end
    return string_format("%.17g", v)
  end
  return "null"
end

-- Encodes a table of scalar values as one JSON object, keys sorted (stable output).
local function json_object(t)
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = k
  end
  table_sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    parts[i] = json_string(k) .. ":" .. json_value(t[k])
  end
  return "{" .. table_concat(parts, ",") .. "}"
end

_M.json_object = json_object

-- The answer to a handled delivery, json_object({ ok = true, result = "handled", event = event,
-- handlers = handlers, unknown = unknown }) written out: the answer sent most often, and
-- json_object's loops would keep LuaJIT from compiling the request path.
local function handled_json(event, handlers, unknown)
  return '{"event":' .. json_string(event) .. ',"handlers":' .. json_value(handlers)
    .. ',"ok":true,"result":"handled"' .. (unknown and ',"unknown":true}' or "}")
end

_M.handled_json = handled_json

---------------------------------------------------------------------------------------------
-- Helpers

local function is_callable(f)
  if type(f) == "function" then
    return true
  end
  local mt = getmetatable(f)
  return type(mt) == "table" and type(rawget(mt, "__call")) == "function"
end

-- Looks a header up case-insensitively; a header sent several times (a list, as
-- ngx.req.get_headers gives it) is joined with "," as HTTP combines repeated fields.
local function header_value(headers, lower_name)
  local value = headers[lower_name]
  if value == nil then
    for name, v in pairs(headers) do
      if type(name) == "string" and string_lower(name) == lower_name then
        value = v
        break
      end
    end
  end
  if type(value) == "table" then
    local parts = {}
    for i, v in ipairs(value) do
      parts[i] = tostring(v)
    end
    value = table_concat(parts, ",")
  elseif value ~= nil then
    value = tostring(value)
  end
  return value
end


local function default_log(level, message)
  io_stderr:write("jicoo-webhook [", level, "] ", message, "\n")
end

local function first_line(s)
  return string_match(s, "^[^\n]*")
end

-- The logger handed to handlers as ctx.log: ctx.log("fmt", ...) logs at info level;
-- ctx.log.debug/info/warn/error(fmt, ...) pick the level. Messages are prefixed with the
-- handler that wrote them. The logger and its levels are callable tables, not closures: LuaJIT
-- cannot compile the creation of a closure, and a handler that logs runs on every delivery.
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

local logger_meta = {
  __call = function(self, fmt, ...)
    log_emit(self, "info", fmt, ...)
  end,
}

local function new_context_logger(sink, ctx)
  local logger = setmetatable({ sink = sink, ctx = ctx }, logger_meta)
  logger.debug = setmetatable({ logger = logger, level = "debug" }, level_meta)
  logger.info = setmetatable({ logger = logger, level = "info" }, level_meta)
  logger.warn = setmetatable({ logger = logger, level = "warn" }, level_meta)
  logger.error = setmetatable({ logger = logger, level = "error" }, level_meta)
  return logger
end

-- ctx:setting(name, env_name, default): a handler's setting from ctx.config (the router's
-- config, or `jicoo-webhook run --set NAME=VALUE`), else the environment variable env_name,
-- else default; an empty value counts as unset.
local function context_setting(ctx, name, env_name, default)
  local value = ctx.config[name]
  if (value == nil or value == "") and env_name then
    value = os_getenv(env_name)
  end
  if value == nil or value == "" then
    value = default
  end
  return value
end

local function describe_function(fn)
  if type(fn) == "function" then
    local info = debug_getinfo(fn, "S")
    if info and info.short_src and info.linedefined and info.linedefined > 0 then
      return info.short_src .. ":" .. info.linedefined
    end
  end
  return tostring(fn)
end

local function message_handler(err)
  return traceback(tostring(err), 2)
end

---------------------------------------------------------------------------------------------
-- Construction and registration

function _M.new(opts)
  if opts == nil then
    opts = {}
  elseif type(opts) ~= "table" then
    error("webhook.router: opts must be a table, got " .. type(opts), 2)
  end
  for name in pairs(opts) do
    if not OPTION_NAMES[name] then
      error("webhook.router: unknown option '" .. tostring(name) .. "'", 2)
    end
  end
  webhook = webhook or require "jicoo.webhook"

  local verify = opts.verify ~= false
  -- Let verify judge the secrets now (it raises on bad ones), not on the first delivery.
  if verify and (opts.secrets == nil or not pcall(core.verify, "", nil, opts.secrets)) then
    error("webhook.router: opts.secrets (a secret or a list of secrets) is required"
      .. " unless opts.verify is false", 2)
  end

  local parse_opts = {}
  for _, name in ipairs(PARSE_OPTION_NAMES) do
    parse_opts[name] = opts[name]
  end
  -- Let the parser judge the parse options now (it raises on bad ones), not on the first
  -- delivery.
  local ok, err = pcall(webhook.parse, "{}", parse_opts)
  if not ok then
    error("webhook.router: " .. tostring(err), 2)
  end

  local max_size = opts.max_size or core.limits.max_size
  local id_store = opts.store
  if id_store == nil then
    id_store = store.memory()
  elseif not store.is_store(id_store) then
    error("webhook.router: opts.store must have add(key, ttl) and delete(key) methods", 2)
  end
  local ttl = opts.ttl or store.DEFAULT_TTL
  if type(ttl) ~= "number" or ttl <= 0 then
    error("webhook.router: opts.ttl must be a positive number of seconds", 2)
  end
  local now = opts.now
  if now ~= nil and type(now) ~= "number" and not is_callable(now) then
    error("webhook.router: opts.now must be a number or a function", 2)
  end
  local log = opts.log or default_log
  if not is_callable(log) then
    error("webhook.router: opts.log must be a function(level, message)", 2)
  end
  local config = opts.config or {}
  if type(config) ~= "table" then
    error("webhook.router: opts.config must be a table", 2)
  end

  -- ctx.log is made the first time a handler reads it: most deliveries never log.
  local context_meta = {
    __index = function(ctx, name)
      if name == "log" then
        local logger = new_context_logger(log, ctx)
        rawset(ctx, "log", logger)
        return logger
      elseif name == "setting" then
        return context_setting
      end
      return nil
    end,
  }

  return setmetatable({
    context_meta = context_meta,
    verify = verify,
    secrets = opts.secrets,
    tolerance = opts.tolerance,
    parse_opts = parse_opts,
    max_size = max_size,
    store = id_store,
    ttl = ttl,
    now_option = now,
    log = log,
    config = config,
    routes = {},          -- { event = name or "*", fn = handler, label = text }, in order
    error_handlers = {},
  }, Router)
end

local function add_route(self, name, fn, label)
  local routes = self.routes
  routes[#routes + 1] = { event = name, fn = fn, label = label }
end

-- Registers fn(ev, ctx) for one event name, or for every event with "*".
function Router:on(name, fn)
  if type(name) ~= "string" or name == "" then
    error("router:on: event name must be a non-empty string", 2)
  end
  if not is_callable(fn) then
    error("router:on: handler must be a function, got " .. type(fn), 2)
  end
  add_route(self, name, fn, name .. " handler at " .. describe_function(fn))
  return self
end

-- Registers fn(message, ev, ctx), called when a handler raises or the store fails.
function Router:on_error(fn)
  if not is_callable(fn) then
    error("router:on_error: handler must be a function, got " .. type(fn), 2)
  end
  local handlers = self.error_handlers
  handlers[#handlers + 1] = fn
  return self
end

---------------------------------------------------------------------------------------------
-- Handler scripts

local function shell_quote(s)
  return "'" .. string_gsub(s, "'", "'\\''") .. "'"
end

local function list_directory(dir)
  local has_lfs, lfs = pcall(require, "lfs")
  local names = {}
  if has_lfs and type(lfs) == "table" and lfs.dir then
    local ok, iter, state = pcall(lfs.dir, dir)
    if not ok then
      return nil, "cannot open directory " .. dir .. ": " .. tostring(iter)
    end
    for name in iter, state do
      names[#names + 1] = name
    end
  else
    local quoted = shell_quote(dir)
    local pipe = io_popen("if [ -d " .. quoted .. " ]; then ls -1a " .. quoted
      .. "; else echo '/missing'; fi")
    if not pipe then
      return nil, "cannot list directory " .. dir
    end
    for name in pipe:lines() do
      if name == "/missing" then
        pipe:close()
        return nil, "cannot open directory " .. dir .. ": not a directory"
      end
      names[#names + 1] = name
    end
    pipe:close()
  end
  table_sort(names)
  return names
end

-- A script's globals live in its own table; reads fall through to the real globals.
-- SCRIPT_DIR (the folder, ending in "/") lets scripts dofile shared "_helper.lua" files.
local function new_script_env(script_dir)
  local env = setmetatable({}, { __index = global_env })
  -- `_G.x = 1` in a script stays in the script too.
  env._G = env
  env.SCRIPT_DIR = script_dir
  return env
end

local function compile_script(source, chunk_name, env)
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

-- Runs one script file and returns its list of handler functions.
local function load_script(path, script_dir)
  local file, open_err = io_open(path, "rb")
  if not file then
    return nil, "cannot open " .. tostring(open_err)
  end
  local source = file:read("*a")
  file:close()
  if not source then
    return nil, path .. ": cannot read"
  end

  local chunk, compile_err = compile_script(source, "@" .. path, new_script_env(script_dir))
  if not chunk then
    return nil, compile_err
  end
  local ok, result = xpcall(chunk, message_handler)
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

local function is_known_event(name)
  for _, known in ipairs(webhook.EVENTS or {}) do
    if known == name then
      return true
    end
  end
  return false
end

-- Loads dir/<event>.lua (handlers for that event) and dir/any.lua (every event). Files whose
-- name starts with "_" or "." are left alone (helpers, editor files). Returns the number of
-- handlers registered, or nil, message, failures when some script failed: the scripts that
-- did load stay registered (one bad script never stops the others).
function Router:load(dir)
  if type(dir) ~= "string" or dir == "" then
    error("router:load: dir must be a non-empty string", 2)
  end
  local names, list_err = list_directory(dir)
  if not names then
    return nil, list_err, { { file = dir, message = list_err } }
  end
  local prefix = string_sub(dir, -1) == "/" and dir or dir .. "/"

  -- any.lua first: its handlers run before the per-event ones.
  local scripts = {}
  for _, name in ipairs(names) do
    local event = string_match(name, "^([%w][%w_%-]*)%.lua$")
    if event == "any" then
      table_insert(scripts, 1, { path = prefix .. name, event = ANY })
    elseif event then
      scripts[#scripts + 1] = { path = prefix .. name, event = event }
    end
  end

  local registered, failures = 0, {}
  for _, script in ipairs(scripts) do
    local handlers, err = load_script(script.path, prefix)
    if handlers then
      if script.event ~= ANY and not is_known_event(script.event) then
        self.log("warn", script.path .. ": '" .. script.event .. "' is not a known Jicoo event;"
          .. " its handlers run only if Jicoo sends that event name")
      end
      for i, fn in ipairs(handlers) do
        local label = script.path
        if #handlers > 1 then
          label = label .. "#" .. i
        end
        add_route(self, script.event, fn, label)
        registered = registered + 1
      end
    else
      failures[#failures + 1] = { file = script.path, message = err }
    end
  end

  if #failures > 0 then
    local lines = {}
    for i, failure in ipairs(failures) do
      lines[i] = failure.message
    end
    return nil, table_concat(lines, "\n"), failures
  end
  return registered
end

---------------------------------------------------------------------------------------------
-- handle

local function respond(status, doc, event, errors)
  return {
    status = status,
    body = json_object(doc),
    event = event,
    errors = errors or {},
  }
end

local function current_time(self)
  local now = self.now_option
  if now == nil then
    return os_time()
  elseif type(now) == "number" then
    return now
  end
  return now()
end

local function report_error(self, message, ev, ctx)
  local handlers = self.error_handlers
  if #handlers == 0 then
    self.log("error", message)
    return
  end
  for _, fn in ipairs(handlers) do
    local ok, err = pcall(fn, message, ev, ctx)
    if not ok then
      self.log("error", "on_error handler failed: " .. tostring(err) .. " (reporting: " .. message .. ")")
    end
  end
end

-- Claims the key; a store that raises counts as a failed store.
local function claim(self, key)
  local ok, claimed, err = pcall(self.store.add, self.store, key, self.ttl)
  if not ok then
    return nil, tostring(claimed)
  end
  if claimed == nil then
    return nil, tostring(err or "store:add returned nil")
  end
  return claimed
end

local function release(self, key)
  local ok, released, err = pcall(self.store.delete, self.store, key)
  if not ok or released == nil then
    local message = tostring(ok and (err or "store:delete returned nil") or released)
    self.log("error", "cannot release the claim on " .. key .. " (the retry will be taken for a"
      .. " duplicate until the claim expires): " .. message)
  end
end

-- The checks before any handler runs: size, signature, payload, and the claim on the
-- delivery's key. Returns the delivery to dispatch, or nil and the final answer (413, 401, 400,
-- 500 when the store fails, 200 for a duplicate).
function Router:accept(body, headers)
  if type(body) ~= "string" then
    error("router:accept: body must be a string, got " .. type(body), 2)
  end
  if headers == nil then
    headers = {}
  elseif type(headers) ~= "table" then
    error("router:accept: headers must be a table, got " .. type(headers), 2)
  end

  if #body > self.max_size then
    local message = string_format("limit: body of %d bytes is over the %d-byte size limit",
      #body, self.max_size)
    return nil, respond(413, { ok = false, error = "too_large", max_size = self.max_size }, nil,
      { { stage = "size", code = "limit", message = message } })
  end

  local now = current_time(self)
  if self.verify then
    local header = header_value(headers, SIGNATURE_HEADER)
    local ok, msg, code = webhook.verify(body, header, self.secrets,
      { tolerance = self.tolerance, now = now })
    if not ok then
      return nil, respond(401, { ok = false, error = "bad_signature", code = code }, nil,
        { { stage = "signature", code = code, message = msg } })
    end
  end

  local ev, msg, info = webhook.parse(body, self.parse_opts)
  if not ev then
    return nil, respond(400, {
      ok = false, error = "invalid_payload", code = info.code, path = info.path,
      offset = info.offset, message = msg,
    }, nil, { { stage = "parse", code = info.code, path = info.path, offset = info.offset,
      message = msg } })
  end

  local key = ev:key()
  local ctx = setmetatable({
    headers = headers,
    body = body,
    received_at = now,
    key = key,
    config = self.config,
  }, self.context_meta)

  local claimed, store_err = claim(self, key)
  local res
  if claimed == nil then
    local message = "store: cannot claim " .. key .. ": " .. store_err
    report_error(self, message, ev, ctx)
    res = respond(500, { ok = false, error = "store_failed", event = ev.event }, ev,
      { { stage = "store", message = message } })
  elseif claimed == false then
    self.log("info", "duplicate delivery " .. key .. ": already claimed, handlers not run")
    res = respond(200, {
      ok = true, result = "duplicate", event = ev.event, unknown = (not ev:is_known()) or nil,
    }, ev)
    res.duplicate = true
  else
    return { event = ev, ctx = ctx, key = key }
  end
  res.key = key
  return nil, res
end

-- fn(ev, ctx) under xpcall with a traceback. LuaJIT and Lua 5.2+ pass xpcall's extra
-- arguments on, which keeps the hot path free of a closure per call; Lua 5.1 needs one.
local call_handler
if select(2, xpcall(function(x) return x end, message_handler, true)) then
  call_handler = function(fn, ev, ctx)
    return xpcall(fn, message_handler, ev, ctx)
  end
else
  call_handler = function(fn, ev, ctx)
    return xpcall(function() return fn(ev, ctx) end, message_handler)
  end
end

-- Runs one route's handler if the delivery is for it, noting the outcome in ran and errors.
local function run_route(self, route, ev, ctx, ran, errors)
  if route.event ~= ev.event and route.event ~= ANY then
    return
  end
  ctx.handler = route.label
  local ok, err = call_handler(route.fn, ev, ctx)
  ctx.handler = nil
  if ok then
    ran[#ran + 1] = { handler = route.label, ok = true }
  else
    local message = route.label .. " failed: " .. tostring(err)
    ran[#ran + 1] = { handler = route.label, ok = false, error = first_line(tostring(err)) }
    errors[#errors + 1] = { stage = "handler", handler = route.label,
      message = first_line(tostring(err)) }
    report_error(self, message, ev, ctx)
  end
end

-- Runs the handlers of an accepted delivery, in registration order. When one raises, the
-- others still run, the claim is released (so the sender's retry runs them again) and the
-- answer is 500. The first routes are run one by one, not in a loop: a loop that runs a few
-- times on every request keeps LuaJIT from compiling the request's path.
function Router:dispatch(delivery)
  local ev, ctx = delivery.event, delivery.ctx
  local ran, errors = {}, {}
  local routes = self.routes
  local n = #routes
  if n >= 1 then run_route(self, routes[1], ev, ctx, ran, errors) end
  if n >= 2 then run_route(self, routes[2], ev, ctx, ran, errors) end
  if n >= 3 then run_route(self, routes[3], ev, ctx, ran, errors) end
  if n >= 4 then run_route(self, routes[4], ev, ctx, ran, errors) end
  for i = 5, n do
    run_route(self, routes[i], ev, ctx, ran, errors)
  end

  local res
  if #errors > 0 then
    self:release(delivery)
    res = respond(500, {
      ok = false, error = "handler_failed", event = ev.event, failed = #errors,
    }, ev, errors)
  else
    res = { status = 200, body = handled_json(ev.event, #ran, not ev:is_known()), event = ev,
      errors = {} }
  end
  res.key = delivery.key
  res.handlers = ran
  return res
end

-- Gives up an accepted delivery's claim without running it (e.g. it could not be scheduled),
-- so that the sender's retry is not taken for a duplicate.
function Router:release(delivery)
  release(self, delivery.key)
end

-- The whole receive path, accept then dispatch: returns
-- { status, body, event, errors, key, handlers, duplicate }.
function Router:handle(body, headers)
  local delivery, res = self:accept(body, headers)
  if not delivery then
    return res
  end
  return self:dispatch(delivery)
end

return _M
