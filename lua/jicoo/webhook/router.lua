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
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort
local table_insert = table.insert
local math_random = math.random
local math_max = math.max
local math_ceil = math.ceil
local io_open = io.open
local io_popen = io.popen
local io_stderr = io.stderr
local os_time = os.time
local os_getenv = os.getenv
local global_env = _G

local store = require "jicoo.webhook.store"
local core = require "jicoo.webhook.core"
local json = require "jicoo.webhook.json"
local journal_module = require "jicoo.webhook.journal"

local json_encode = json.encode
local encode_string = json.encode_string
local encode_number = json.encode_number

local _M = {}

local SIGNATURE_HEADER = "jicoo-webhook-signature"
local ANY = "*"

-- The router's own options; every parse option (the limits included) is passed on to parse.
local OPTION_NAMES = {
  secrets = true, tolerance = true, verify = true,
  journal = true, store = true, ttl = true, lease = true, retry_delays = true,
  now = true, log = true, config = true,
}

-- Seconds between attempts of a failed delivery (8 attempts over about 22 hours); each delay is
-- varied by up to a quarter either way, so that deliveries that failed together spread out.
local DEFAULT_RETRY_DELAYS = { 60, 300, 900, 3600, 10800, 21600, 43200 }
local DEFAULT_LEASE = 300
local DUE_PER_RUN = 100
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

-- The answer to a handled delivery, json.encode({ ok = true, result = "handled", event = event,
-- handlers = handlers, unknown = unknown }) written out: the answer sent most often, and
-- json.encode's loops would keep LuaJIT from compiling the request path.
local function handled_json(event, handlers, unknown)
  return '{"event":' .. encode_string(event) .. ',"handlers":' .. encode_number(handlers)
    .. ',"ok":true,"result":"handled"' .. (unknown and ',"unknown":true}' or "}")
end

_M.handled_json = handled_json
_M.json_object = json_encode

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
  local ttl = opts.ttl or store.DEFAULT_TTL
  if type(ttl) ~= "number" or ttl <= 0 then
    error("webhook.router: opts.ttl must be a positive number of seconds", 2)
  end
  local journal = opts.journal
  if journal ~= nil and opts.store ~= nil then
    error("webhook.router: opts.journal and opts.store exclude each other (a journal is its own"
      .. " claim store)", 2)
  elseif journal ~= nil and opts.ttl ~= nil then
    error("webhook.router: opts.ttl is the journal's own option when opts.journal is given", 2)
  elseif journal ~= nil and not journal_module.is_journal(journal) then
    error("webhook.router: opts.journal must have the journal methods (acquire, update, due,"
      .. " get, list, rearm, remove)", 2)
  elseif opts.store ~= nil and not store.is_store(opts.store) then
    error("webhook.router: opts.store must have add(key, ttl) and delete(key) methods", 2)
  end
  if journal == nil then
    journal = journal_module.memory({ claims = opts.store, ttl = ttl })
  end
  local lease = opts.lease or DEFAULT_LEASE
  if type(lease) ~= "number" or lease <= 0 then
    error("webhook.router: opts.lease must be a positive number of seconds", 2)
  end
  local retry_delays = opts.retry_delays or DEFAULT_RETRY_DELAYS
  if type(retry_delays) ~= "table" then
    error("webhook.router: opts.retry_delays must be a list of seconds", 2)
  end
  for i, delay in ipairs(retry_delays) do
    if type(delay) ~= "number" or delay < 0 then
      error("webhook.router: opts.retry_delays[" .. i .. "] must be a number of seconds", 2)
    end
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
    journal = journal,
    lease = lease,
    retry_delays = retry_delays,
    max_attempts = #retry_delays + 1,
    now_option = now,
    log = log,
    config = config,
    routes = {},          -- { event = name or "*", fn = handler, label = text }, in order
    error_handlers = {},
    label_counts = {},    -- label -> routes registered under it
    reported = {},        -- journal files already reported as unreadable
  }, Router)
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
      -- In the broken script's place, a handler that fails with its error: the deliveries it
      -- would have handled are journaled as failed and retried, and run it once it is fixed.
      local message = "the script did not load: " .. tostring(err)
      add_route(self, script.event, function() error(message, 0) end, script.path)
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
    body = json_encode(doc),
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

-- The journal's answer, a journal that raised counted as one that failed: pcall's results.
local function journal_result(ok, a, b)
  if not ok then
    return nil, tostring(a)
  end
  return a, b
end

local function acquire(self, key, now, new, take_failed)
  local j = self.journal
  return journal_result(pcall(j.acquire, j, key, now, self.lease, new, take_failed))
end

-- The delay before the attempt after `attempts` failed ones, jittered, or nil when there is no
-- attempt left.
local function retry_delay(self, attempts)
  local delay = self.retry_delays[attempts]
  if delay == nil then
    return nil
  end
  return delay * (0.75 + 0.5 * math_random())
end

-- What a copy of a delivery that is already journaled is answered: 200 duplicate when the
-- journal will see it through (durable, or it is done or dead), else 503 with the seconds to
-- wait, so that the sender tries again.
local function answer_copy(self, ev, key, outcome, record, now)
  local state = outcome == "busy" and "running" or outcome == "waiting" and "failed" or outcome
  if (outcome == "busy" or outcome == "waiting") and not self.journal.durable then
    self.log("info", "delivery " .. key .. " is " .. state .. " in this process: answered 503")
    local res = respond(503, { ok = false, error = "in_progress", event = ev.event }, ev)
    res.key = key
    res.retry_after = math_max(1, math_ceil((record.lease_until or now) - now))
    return res
  end
  self.log("info", "duplicate delivery " .. key .. " (" .. state .. "): handlers not run")
  local res = respond(200, {
    ok = true, result = "duplicate", state = state, event = ev.event,
    unknown = (not ev:is_known()) or nil,
  }, ev)
  res.duplicate = true
  res.key = key
  return res
end

local function new_context(self, key, body, headers, received_at, attempt)
  return setmetatable({
    headers = headers,
    body = body,
    received_at = received_at,
    key = key,
    config = self.config,
    attempt = attempt,
  }, self.context_meta)
end

-- The checks before any handler runs: size, signature, payload, and the journal's record of
-- the delivery (its claim). Returns the delivery to dispatch, or nil and the final answer (413,
-- 401, 400, 500 when the journal fails, 200 for a duplicate, 503 for a copy of a delivery still
-- running in a journal that is not durable).
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
  local outcome, record = acquire(self, key, now, {
    key = key, event = ev.event, uid = ev.object.uid, body = body, received_at = now,
  }, not self.journal.durable)
  if outcome == "new" or outcome == "taken" then
    return { event = ev, key = key, record = record,
      ctx = new_context(self, key, body, headers, record.received_at, record.attempts) }
  elseif outcome == nil then
    local message = "journal: cannot record " .. key .. ": " .. tostring(record)
    report_error(self, message, ev, new_context(self, key, body, headers, now, 0))
    local res = respond(500, { ok = false, error = "store_failed", event = ev.event }, ev,
      { { stage = "store", message = message } })
    res.key = key
    return nil, res
  end
  return nil, answer_copy(self, ev, key, outcome, record, now)
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

-- Writes changes to the delivery's record under its lease; a record that cannot be written is
-- logged (the delivery stays running, and is taken over once its lease runs out).
local function record_outcome(self, delivery, changes, now)
  local j = self.journal
  local ok, err = journal_result(pcall(j.update, j, delivery.key, delivery.record.token, changes,
    now))
  if ok == false then
    self.log("warn", "journal: the lease on " .. delivery.key .. " ran out and another attempt"
      .. " took it over; this attempt's outcome is not recorded")
  elseif ok == nil then
    self.log("error", "journal: cannot record how " .. delivery.key .. " went (it runs again"
      .. " once its lease runs out): " .. tostring(err))
  end
  return ok
end

-- Whether route still has to run for a delivery of event whose succeeded handlers are these.
local function is_pending(route, event, succeeded)
  return (route.event == event or route.event == ANY) and not succeeded[route.label]
end

-- The end of an attempt that failed: due again after the retry delay, or dead (logged once).
local function failure_changes(self, delivery, succeeded, errors, now)
  local attempts = delivery.record.attempts
  local delay = attempts < self.max_attempts and retry_delay(self, attempts)
  local failures = {}
  for i, e in ipairs(errors) do
    failures[i] = { handler = e.handler, message = e.message }
  end
  if delay then
    return { state = "failed", handlers = succeeded, errors = failures, next_at = now + delay }
  end
  local parts = {}
  for i, e in ipairs(failures) do
    parts[i] = tostring(e.handler) .. ": " .. tostring(e.message)
  end
  self.log("error", "dead letter " .. delivery.key .. " after " .. attempts .. " attempt(s): "
    .. table_concat(parts, "; ") .. " (jicoo-webhook deliveries show / retry)")
  return { state = "dead", handlers = succeeded, errors = failures, finished_at = now }
end

-- Runs the handlers an accepted delivery still needs, in registration order; each success is
-- written to the journal before the next handler starts (the last one with the outcome), so a
-- handler that succeeded never runs again for this delivery. When one raises, the others still
-- run and the answer is 500: the delivery is due again after its retry delay, or dead.
function Router:dispatch(delivery)
  local ev, ctx, record = delivery.event, delivery.ctx, delivery.record
  local event = ev.event
  -- The record is this attempt's own (the lease's holder's): it grows as handlers succeed.
  local succeeded = record.handlers or {}
  record.handlers = succeeded
  local routes = self.routes
  local last = 0   -- the last route the delivery still needs
  for i = #routes, 1, -1 do
    if is_pending(routes[i], event, succeeded) then
      last = i
      break
    end
  end
  local ran, errors = {}, {}
  for i = 1, last do
    local route = routes[i]
    if is_pending(route, event, succeeded) then
      ctx.handler = route.label
      local ok, err = call_handler(route.fn, ev, ctx)
      ctx.handler = nil
      if ok then
        ran[#ran + 1] = { handler = route.label, ok = true }
        succeeded[route.label] = true
        if i < last then
          local now = current_time(self)
          record_outcome(self, delivery, { handlers = succeeded, lease_until = now + self.lease },
            now)
        end
      else
        local message = first_line(tostring(err))
        ran[#ran + 1] = { handler = route.label, ok = false, error = message }
        errors[#errors + 1] = { stage = "handler", handler = route.label, message = message }
        report_error(self, route.label .. " failed: " .. tostring(err), ev, ctx)
      end
    end
  end

  local now = current_time(self)
  local res
  if #errors > 0 then
    record_outcome(self, delivery, failure_changes(self, delivery, succeeded, errors, now), now)
    res = respond(500, {
      ok = false, error = "handler_failed", event = ev.event, failed = #errors,
    }, ev, errors)
  else
    record_outcome(self, delivery, { state = "done", handlers = succeeded, errors = {},
      finished_at = now }, now)
    res = { status = 200, body = handled_json(ev.event, #ran, not ev:is_known()), event = ev,
      errors = {} }
  end
  res.key = delivery.key
  res.handlers = ran
  return res
end

-- Gives an accepted delivery back without running it (e.g. it could not be scheduled): due
-- again at once, its attempt not counted.
function Router:release(delivery)
  local now = current_time(self)
  record_outcome(self, delivery, { state = "failed", next_at = now,
    attempts = delivery.record.attempts - 1 }, now)
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

-- A journaled delivery taken for another attempt, ready for dispatch; or nil when its body no
-- longer parses (the router's parse options changed), which ends it as dead.
local function journaled_delivery(self, key, record, now)
  local ev, msg = webhook.parse(record.body or "", self.parse_opts)
  local delivery = { event = ev, key = key, record = record }
  if not ev then
    self.log("error", "dead letter " .. key .. ": its journaled body no longer parses: " .. msg)
    record_outcome(self, delivery, { state = "dead", finished_at = now,
      errors = { { handler = "(parse)", message = msg } } }, now)
    return nil
  end
  delivery.ctx = new_context(self, key, record.body, {}, record.received_at, record.attempts)
  return delivery
end

-- One pass of the scheduler: every delivery the journal has due now (a failed one whose retry
-- time came, a running one whose lease ran out: its worker died) is taken, under a fresh lease,
-- and its remaining handlers run. Returns how many ran, and their results. The nginx adapter
-- calls it from a timer in every worker; a plain-Lua program calls it when it likes.
function Router:run_due()
  local now = current_time(self)
  local j = self.journal
  local keys, problems = journal_result(pcall(j.due, j, now, DUE_PER_RUN))
  if not keys then
    -- once per outage, not once a second
    if not self.due_failing then
      self.log("error", "journal: cannot list the deliveries due (retries wait until it can): "
        .. tostring(problems))
    end
    self.due_failing = true
    return 0, {}
  end
  if self.due_failing then
    self.log("info", "journal: the deliveries due can be listed again")
    self.due_failing = nil
  end
  for _, problem in ipairs(type(problems) == "table" and problems or {}) do
    if not self.reported[problem.file] then
      self.reported[problem.file] = true
      self.log("error", "journal: skipping " .. problem.file .. ": " .. problem.error)
    end
  end
  local results = {}
  for _, key in ipairs(keys) do
    local outcome, record = acquire(self, key, now, nil, false)
    if outcome == "taken" then
      local delivery = journaled_delivery(self, key, record, now)
      if delivery then
        local res = self:dispatch(delivery)
        self.log(res.status == 200 and "info" or "warn", "attempt " .. record.attempts .. " of "
          .. key .. ": " .. (res.status == 200 and "handled" or "failed"))
        results[#results + 1] = res
      end
    elseif outcome == nil then
      self.log("error", "journal: cannot take " .. key .. ": " .. tostring(record))
    end
  end
  return #results, results
end

return _M
