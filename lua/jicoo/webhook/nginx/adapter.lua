-- The nginx adapter: serves a router from content_by_lua*. Reads the raw body (from memory or
-- from nginx's temp file), answers the router's status and JSON body, logs through ngx.log.
-- Handlers run here in Lua (never inside a C call), so they may use cosockets and ngx.sleep.

local ngx = ngx
local ngx_log = ngx.log
local ngx_req = ngx.req
local ngx_timer_at = ngx.timer.at
local ngx_print = ngx.print
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local tonumber = tonumber
local string_format = string.format
local string_match = string.match
local string_find = string.find
local string_gsub = string.gsub
local string_byte = string.byte
local table_concat = table.concat

local answer = require "jicoo.webhook.router.answer"
local core = require "jicoo.webhook.core"
local count_keys = require "table.nkeys" -- OpenResty's LuaJIT has it
local options = require "jicoo.webhook.options"
local router_module = require "jicoo.webhook.router"

local _M = {}

local MAX_HEADERS = 100
local SERVE_OPTIONS = options.schema("openresty.serve", {
  { "answer_first", "boolean" },
  { "max_size", "number", check = options.positive, what = "a positive number of bytes" },
})

local LEVELS = {
  debug = ngx.DEBUG,
  info = ngx.INFO,
  warn = ngx.WARN,
  error = ngx.ERR,
}

-- Control bytes written as JSON writes them (\n, \r, \t, \u00XX), so that no byte of a delivery
-- (a key in an error's path, a booking uid in a delivery's key) can end a log entry or start a
-- forged one: every entry the adapter writes is one line.
local CONTROL_ESCAPES = { ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function escape_control(c)
  return CONTROL_ESCAPES[c] or string_format("\\u%04X", string_byte(c))
end

local function printable(s)
  s = tostring(s)
  if not string_find(s, "%c") then
    return s
  end
  return (string_gsub(s, "%c", escape_control))
end

-- The level below which nginx writes nothing here (error_log's), from resty.core.
local ok_errlog, errlog = pcall(require, "ngx.errlog")
local log_filter = ok_errlog and errlog.get_sys_filter_level or function() return ngx.DEBUG end

-- The router's log sink: function(level, message) onto nginx's error log, one line an entry (a
-- handler's traceback too, its line breaks written as \n). A message below error_log's level is
-- not escaped for nothing: a handler that logs each delivery at info level costs little when
-- nginx logs from notice up.
function _M.log(level, message)
  local nginx_level = LEVELS[level] or ngx.NOTICE
  if nginx_level > log_filter() then
    return
  end
  ngx_log(nginx_level, "jicoo-webhook: ", printable(message))
end

-- webhook.router(opts) with opts.log defaulting to ngx.log; opts as webhook.router takes them.
function _M.router(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("openresty.router: opts must be a table, got " .. type(opts), 2)
  end
  local copy = {}
  for name, value in pairs(opts or {}) do
    copy[name] = value
  end
  copy.log = copy.log or _M.log
  local ok, router = pcall(router_module.new, copy)
  if not ok then
    error(router, 2)
  end
  return router
end

---------------------------------------------------------------------------------------------
-- The request

local function send(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.header["Cache-Control"] = "no-store"
  ngx_print(body)
end

local function describe_error(e)
  local parts = {}
  if e.stage then parts[#parts + 1] = "stage=" .. printable(e.stage) end
  if e.code then parts[#parts + 1] = "code=" .. printable(e.code) end
  if e.path then parts[#parts + 1] = "path=" .. (e.path == "" and '""' or printable(e.path)) end
  if e.offset then parts[#parts + 1] = "offset=" .. printable(e.offset) end
  if e.handler then parts[#parts + 1] = "handler=" .. printable(e.handler) end
  if e.message then
    parts[#parts + 1] = "(" .. printable(string_match(e.message, "^[^\n]*")) .. ")"
  end
  return table_concat(parts, " ")
end

-- One line per rejection: 4xx are the sender's problem (warn), 5xx ours (error).
local function log_rejection(res)
  local level = res.status >= 500 and ngx.ERR or ngx.WARN
  local errors = res.errors or {}
  if #errors == 0 then
    ngx_log(level, "jicoo-webhook: answered ", res.status, " ", printable(res.body))
    return
  end
  for _, e in ipairs(errors) do
    ngx_log(level, "jicoo-webhook: answered ", res.status, ": ", describe_error(e))
  end
end

-- The raw body: nil when it is over max_size (judged from Content-Length before reading),
-- else the bytes, from memory or from the file nginx spooled them to. Content-Length is read
-- from the headers already fetched, not from ngx.var: resty.core's variable getter is a trace
-- LuaJIT gives up on (it returns below the frame it began in), and every trace through it after
-- that is given up too, which left the whole request path to the interpreter.
local function read_body(headers, max_size)
  local length = tonumber(headers["content-length"])
  if length and length > max_size then
    return nil, length
  end
  ngx_req.read_body()
  local body = ngx_req.get_body_data()
  if body then
    return body
  end
  local path = ngx_req.get_body_file()
  if not path then
    return ""   -- no body at all
  end
  -- nginx wrote the body to a temp file (over client_body_buffer_size): one read of a local
  -- file of at most client_max_body_size bytes.
  local err
  body, err = core.file_read(path)
  if not body then
    return false, "the request body nginx spooled: " .. err
  end
  return body
end

---------------------------------------------------------------------------------------------
-- Answer first, work after

local function dispatch_later(premature, router, delivery)
  if premature then
    ngx_log(ngx.WARN, "jicoo-webhook: worker exiting; handling ", printable(delivery.key),
      " before it stops")
  end
  -- A handler's failure is journaled and retried by the router like any other; only a raise
  -- out of the router itself lands here, and the lease brings the delivery back.
  local ok, err = pcall(router.dispatch, router, delivery)
  if not ok then
    ngx_log(ngx.ERR, "jicoo-webhook: answered 200 first, then handling ", printable(delivery.key),
      " raised: ", printable(err), "; it runs again once its lease runs out")
  end
end

-- Accepts the delivery now (checks, and its journal record: a journal that fails still answers
-- 500 and the sender retries), answers, and leaves the handlers to a zero-delay timer.
local function answer_first(router, body, headers)
  local delivery, res = router:accept(body, headers)
  if not delivery then
    return res
  end
  local scheduled, timer_err = ngx_timer_at(0, dispatch_later, router, delivery)
  if not scheduled then
    -- Due again at once: the scheduler takes it on its next pass.
    router:release(delivery)
    local message = "cannot schedule the handlers of " .. delivery.key .. ": " .. tostring(timer_err)
      .. " (raise lua_max_pending_timers)"
    if not router.journal.durable then
      router.meter:delivery(delivery.event.event, "busy")
      return answer.server_error("busy", message, delivery.event.event)
    end
    ngx_log(ngx.ERR, "jicoo-webhook: ", printable(message), "; the scheduler runs them instead")
  end
  router.meter:delivery(delivery.event.event, "accepted")
  local accepted = answer.accepted(delivery.event)
  accepted.key = delivery.key
  return accepted
end

---------------------------------------------------------------------------------------------
-- The scheduler

-- Runs router:run_due() in this worker (call it from init_worker_by_lua*): once at once, for what
-- a worker that died left behind, then every opts.interval seconds (default 1). A pass that is
-- still running when the next is due lets it go.
function _M.schedule(router, opts)
  if type(router) ~= "table" or type(router.run_due) ~= "function" then
    error("openresty.schedule: router must be a jicoo.webhook router", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("openresty.schedule: opts must be a table, got " .. type(opts), 2)
  end
  local interval = opts and opts.interval or 1
  if type(interval) ~= "number" or interval <= 0 then
    error("openresty.schedule: opts.interval must be a positive number of seconds", 2)
  end
  local running = false
  local function pass(premature)
    if premature or running then
      return
    end
    running = true
    local ok, err = pcall(router.run_due, router)
    running = false
    if not ok then
      ngx_log(ngx.ERR, "jicoo-webhook: the scheduler's pass raised: ", printable(err))
    end
  end
  local ok, err = ngx_timer_at(0, pass)
  if ok then
    ok, err = ngx.timer.every(interval, pass)
  end
  if not ok then
    error("openresty.schedule: cannot start the scheduler's timer: " .. tostring(err), 2)
  end
end

---------------------------------------------------------------------------------------------

-- Serves one request: res (as router:handle gives it) after answering; also in ngx.ctx.jicoo_webhook.
function _M.serve(router, opts)
  if type(router) ~= "table" or type(router.handle) ~= "function" then
    error("openresty.serve: router must be a jicoo.webhook router", 2)
  end
  if opts == nil then
    opts = {}
  elseif type(opts) ~= "table" then
    error("openresty.serve: opts must be a table, got " .. type(opts), 2)
  end
  -- counted, not looped over: a loop on every request keeps LuaJIT from compiling serve; the
  -- schema says what is wrong when the count is off
  if count_keys(opts) ~= (opts.answer_first ~= nil and 1 or 0) + (opts.max_size ~= nil and 1 or 0) then
    SERVE_OPTIONS:check(opts, 2)
  end

  local res
  if ngx.req.get_method() ~= "POST" then
    ngx.header["Allow"] = "POST"
    res = answer.method_not_allowed(ngx.req.get_method())
    router.meter:rejected("method_not_allowed")
  else
    local max_size = opts.max_size or router.max_size
    local headers = ngx_req.get_headers(MAX_HEADERS)
    local body, problem = read_body(headers, max_size)
    if body == nil then
      res = answer.too_large(problem, max_size)
      router.meter:rejected("too_large")
    elseif body == false then
      res = answer.server_error("server_error", problem)
      router.meter:rejected("server_error")
    else
      local serve_one = opts.answer_first and answer_first or router.handle
      local ok, handled = pcall(serve_one, router, body, headers)
      if ok then
        res = handled
      else
        res = answer.server_error("server_error", "the router raised: " .. tostring(handled))
        router.meter:rejected("server_error")
      end
    end
  end

  if res.status >= 400 then
    log_rejection(res)
  end
  ngx.ctx.jicoo_webhook = res
  if res.retry_after then
    ngx.header["Retry-After"] = res.retry_after
  end
  send(res.status, res.body)
  return res
end

return _M
