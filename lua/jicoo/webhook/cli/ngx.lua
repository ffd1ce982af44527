-- A stand-in for nginx's `ngx`, given to handler scripts run outside nginx (jicoo-webhook run)
-- as a global of their world (router:load's env option), never as the process's global: the
-- library decides it runs in nginx by rawget(_G, "ngx"), and it does not. It offers what
-- handlers use: ngx.log and its levels, the clock (ngx.now, ngx.time, ...; ngx.sleep moves it on
-- without waiting), ngx.shared dicts in memory (ngx_shdict.lua), timers run before the command
-- exits, ngx.ctx (a fresh table per delivery), an empty ngx.var, ngx.null, base64, and the
-- worker's and config's few answers. Any other name raises, naming it and what is offered.
--
--   local stand = require("jicoo.webhook.cli.ngx").new({ log = function(level, message) end })
--   router:load(dir, { env = { ngx = stand.ngx } })
--   stand:new_request()                  -- before each delivery: a fresh ngx.ctx
--   stand:run_timers(function(timer) end) -- at the end: the timers, in the order they are due
local type = type
local pairs = pairs
local error = error
local select = select
local xpcall = xpcall
local tostring = tostring
local tonumber = tonumber
local getmetatable = getmetatable
local setmetatable = setmetatable
local rawset = rawset
local unpack = rawget(table, "unpack") or rawget(_G, "unpack")
local debug_getinfo = debug.getinfo
local io_open = io.open
local io_stderr = io.stderr
local os_date = os.date
local os_getenv = os.getenv
local math_floor = math.floor
local string_byte = string.byte
local string_char = string.char
local string_sub = string.sub
local string_find = string.find
local string_match = string.match
local table_sort = table.sort
local table_concat = table.concat
local table_remove = table.remove

local core = require "jicoo.webhook.core"
local options = require "jicoo.webhook.options"
local shdict = require "jicoo.webhook.cli.ngx_shdict"

local _M = {}

-- How often an ngx.timer.every timer runs before the command exits (then once more, premature,
-- as nginx calls every pending timer when a worker exits), and how many timer runs in all
-- (a timer that keeps queueing itself) before the rest are called premature.
_M.EVERY_RUNS = 3
_M.MAX_TIMER_RUNS = 1000

-- nginx's log levels, their values and the names its error log prints.
local LEVELS = { STDERR = 0, EMERG = 1, ALERT = 2, CRIT = 3, ERR = 4, WARN = 5, NOTICE = 6,
  INFO = 7, DEBUG = 8 }
local LEVEL_NAMES = { [0] = "stderr", "emerg", "alert", "crit", "error", "warn", "notice",
  "info", "debug" }

local OPTIONS = options.schema("ngx stand-in", {
  { "log", "callable", what = "a function(level, message)" },
  { "now", "callable", what = "a function returning seconds (the clock)" },
  { "prefix", "string" },
})

local function offers(names)
  local list = {}
  for name in pairs(names) do
    list[#list + 1] = name
  end
  table_sort(list)
  return table_concat(list, ", ")
end

-- A table whose unknown fields raise, naming the field and what the table offers.
local function strict(path, t)
  local offered
  return setmetatable(t, { __index = function(_, name)
    offered = offered or offers(t)
    error(path .. "." .. tostring(name) .. " is not available in jicoo-webhook run ("
      .. path .. " offers " .. offered .. ")", 2)
  end })
end

local function where(fn)
  local info = debug_getinfo(fn, "S")
  if info and info.short_src and info.linedefined and info.linedefined > 0 then
    return info.short_src .. ":" .. info.linedefined
  end
  return tostring(fn)
end

-- This process's id, as Linux's /proc tells it; 0 where there is none.
local function process_id()
  local file = io_open("/proc/self/stat", "rb")
  if not file then
    return 0
  end
  local stat = file:read("*l") or ""
  file:close()
  return tonumber(string_match(stat, "^(%d+)")) or 0
end

---------------------------------------------------------------------------------------------
-- Base64 (RFC 4648's alphabet), as ngx.encode_base64 and ngx.decode_base64 answer

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local DIGIT, VALUE = {}, {}
for i = 0, 63 do
  DIGIT[i] = string_sub(ALPHABET, i + 1, i + 1)
  VALUE[string_byte(ALPHABET, i + 1)] = i
end

local function encode_base64(s, no_padding)
  if type(s) == "number" then
    s = tostring(s)
  elseif s == nil then
    s = ""
  elseif type(s) ~= "string" then
    error("bad argument #1 to 'encode_base64' (string expected, got " .. type(s) .. ")", 2)
  end
  local parts = {}
  for i = 1, #s, 3 do
    local a, b, c = string_byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = DIGIT[math_floor(n / 262144)] .. DIGIT[math_floor(n / 4096) % 64]
    if c then
      quad = quad .. DIGIT[math_floor(n / 64) % 64] .. DIGIT[n % 64]
    elseif b then
      quad = quad .. DIGIT[math_floor(n / 64) % 64] .. (no_padding and "" or "=")
    else
      quad = quad .. (no_padding and "" or "==")
    end
    parts[#parts + 1] = quad
  end
  return table_concat(parts)
end

-- The bytes, or nil when s is not base64 (nginx reads up to the first "=").
local function decode_base64(s)
  if type(s) ~= "string" then
    error("bad argument #1 to 'decode_base64' (string expected, got " .. type(s) .. ")", 2)
  end
  local stop = string_find(s, "=", 1, true)
  local len = stop and stop - 1 or #s
  if len % 4 == 1 then
    return nil
  end
  local parts = {}
  for i = 1, len, 4 do
    local n, count = 0, 0
    for j = i, i + 3 do
      if j <= len then
        local v = VALUE[string_byte(s, j)]
        if v == nil then
          return nil
        end
        n, count = n * 64 + v, count + 1
      else
        n = n * 64
      end
    end
    local a, b, c = math_floor(n / 65536), math_floor(n / 256) % 256, n % 256
    if count == 4 then
      parts[#parts + 1] = string_char(a, b, c)
    elseif count == 3 then
      parts[#parts + 1] = string_char(a, b)
    else
      parts[#parts + 1] = string_char(a)
    end
  end
  return table_concat(parts)
end

_M.encode_base64, _M.decode_base64 = encode_base64, decode_base64

---------------------------------------------------------------------------------------------
-- The stand-in

local Stand = {}
Stand.__index = Stand

-- Seconds now on the stand-in's clock: the clock given (the real one by default), moved on by
-- every ngx.sleep and by the timers run ahead of their time.
function Stand:now()
  return self.clock() + self.skipped
end

-- A fresh ngx.ctx, as each request in nginx has.
function Stand:new_request()
  rawset(self.ngx, "ctx", {})
end

-- How many timers wait.
function Stand:pending_timers()
  return #self.queue + #self.parked
end

local function take_next(queue)
  local best = 1
  for i = 2, #queue do
    local t, b = queue[i], queue[best]
    if t.due < b.due or (t.due == b.due and t.seq < b.seq) then
      best = i
    end
  end
  local timer = queue[best]
  table_remove(queue, best)
  return timer
end

local function call_timer(self, timer, premature, report)
  self:new_request()
  self.running = self.running + 1
  local ok, err = xpcall(function()
    return timer.fn(premature, unpack(timer.args, 1, timer.args.n))
  end, tostring)
  self.running = self.running - 1
  if report then
    report({ label = timer.label, ok = ok, error = not ok and tostring(err) or nil,
      premature = premature, at = (premature and self:now() or timer.due) - self.started })
  end
  return ok
end

-- Runs the timers, each when it is due on the stand-in's clock (moved on to it, without
-- waiting), in that order, timers queued meanwhile too; then, as nginx when a worker exits,
-- calls the ones left (an every timer after EVERY_RUNS runs, every timer after MAX_TIMER_RUNS
-- runs) once with premature = true, after which no timer can be queued. report(timer) is told
-- of each run: { label, ok, error, premature, at = seconds after the stand-in was made }.
-- Returns the number run and the number that failed.
function Stand:run_timers(report)
  local ran, failed = 0, 0
  while #self.queue > 0 and ran < _M.MAX_TIMER_RUNS do
    local timer = take_next(self.queue)
    local now = self:now()
    if timer.due > now then
      self.skipped = self.skipped + (timer.due - now)
    end
    if not call_timer(self, timer, false, report) then
      failed = failed + 1
    end
    ran = ran + 1
    if timer.every then
      timer.runs = timer.runs + 1
      timer.due, self.seq = timer.due + timer.every, self.seq + 1
      timer.seq = self.seq
      local list = timer.runs < _M.EVERY_RUNS and self.queue or self.parked
      list[#list + 1] = timer
    end
  end
  self.exiting = true
  local left = self.parked
  for _, timer in pairs(self.queue) do
    left[#left + 1] = timer
  end
  self.queue, self.parked = {}, {}
  while #left > 0 do
    if not call_timer(self, take_next(left), true, report) then
      failed = failed + 1
    end
    ran = ran + 1
  end
  return ran, failed
end

local function add_timer(self, kind, delay, fn, ...)
  if type(delay) ~= "number" or delay < 0 or (kind == "every" and delay == 0) then
    error("bad argument #1 to 'ngx.timer." .. kind .. "' (a number of seconds" .. (kind == "every"
      and " above 0" or ", 0 or more") .. ", got " .. tostring(delay) .. ")", 3)
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'ngx.timer." .. kind .. "' (function expected, got " .. type(fn)
      .. ")", 3)
  end
  if self.exiting then
    return nil, "process exiting"
  end
  self.seq = self.seq + 1
  self.queue[#self.queue + 1] = { due = self:now() + delay, seq = self.seq, fn = fn,
    args = { n = select("#", ...), ... }, label = where(fn),
    every = kind == "every" and delay or nil, runs = 0 }
  return true
end

local function log_line(self, level, ...)
  local name = type(level) == "number" and LEVEL_NAMES[level]
  if not name then
    error("bad argument #1 to 'ngx.log' (a level: ngx.ERR, ngx.WARN, ngx.INFO, ...; got "
      .. tostring(level) .. ")", 3)
  end
  local parts = {}
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    if type(value) == "table" then
      local mt = getmetatable(value)
      if type(mt) ~= "table" or mt.__tostring == nil then
        error("bad argument #" .. (i + 1) .. " to 'ngx.log' (expected table to have"
          .. " __tostring metamethod)", 3)
      end
    end
    parts[i] = tostring(value)
  end
  local info = debug_getinfo(3, "Sl")
  local at = info and info.currentline and info.currentline > 0
    and info.short_src .. ":" .. info.currentline .. ": " or ""
  self.log(name, at .. table_concat(parts))
end

local function default_log(level, message)
  io_stderr:write("[", level, "] ", message, "\n")
end

-- A stand-in: { ngx = the table scripts get, ... } with the methods above. opts: log
-- (function(level, message), stderr by default), now (the clock: a function returning seconds;
-- the real one by default), prefix (ngx.config.prefix(); the current folder by default).
function _M.new(opts)
  opts = OPTIONS:check(opts, 1)
  local self = setmetatable({ clock = opts.now or core.now, log = opts.log or default_log,
    skipped = 0, queue = {}, parked = {}, seq = 0, running = 0, exiting = false }, Stand)
  self.started = self:now()
  local prefix = opts.prefix or ((os_getenv("PWD") or ".") .. "/")
  local function now()
    return self:now()
  end
  local pid

  local ngx = {
    log = function(level, ...) log_line(self, level, ...) end,
    sleep = function(seconds)
      if type(seconds) ~= "number" or seconds < 0 then
        error("bad argument #1 to 'ngx.sleep' (a number of seconds, 0 or more)", 2)
      end
      self.skipped = self.skipped + seconds
    end,
    now = function() return math_floor(now() * 1000) / 1000 end,
    time = function() return math_floor(now()) end,
    update_time = function() end,
    today = function() return os_date("%Y-%m-%d", math_floor(now())) end,
    localtime = function() return os_date("%Y-%m-%d %H:%M:%S", math_floor(now())) end,
    utctime = function() return os_date("!%Y-%m-%d %H:%M:%S", math_floor(now())) end,
    shared = shdict.shared(now),
    null = core.null,
    encode_base64 = encode_base64,
    decode_base64 = decode_base64,
    ctx = {},
    var = setmetatable({}, { __newindex = function(_, name)
      error("ngx.var." .. tostring(name) .. " cannot be set in jicoo-webhook run: there is no"
        .. " request, ngx.var is empty", 2)
    end }),
    timer = strict("ngx.timer", {
      at = function(delay, fn, ...) return add_timer(self, "at", delay, fn, ...) end,
      every = function(delay, fn, ...) return add_timer(self, "every", delay, fn, ...) end,
      running_count = function() return self.running end,
      pending_count = function() return self:pending_timers() end,
    }),
    worker = strict("ngx.worker", {
      pid = function()
        pid = pid or process_id()
        return pid
      end,
      id = function() return 0 end,
      count = function() return 1 end,
    }),
    config = strict("ngx.config", {
      prefix = function() return prefix end,
      subsystem = "http",
    }),
  }
  for name, value in pairs(LEVELS) do
    ngx[name] = value
  end

  local offered = {}
  for name in pairs(ngx) do
    if not LEVELS[name] then
      offered["ngx." .. name] = true
    end
  end
  offered["ngx.status"] = true
  local message = " is not available in jicoo-webhook run (it offers " .. offers(offered)
    .. ", and the log levels ngx.STDERR to ngx.DEBUG)"
  self.ngx = setmetatable(ngx, {
    __index = function(_, name)
      if name == "status" then
        return 0
      end
      error("ngx." .. tostring(name) .. message, 2)
    end,
    __newindex = function(t, name, value)
      if name ~= "status" then   -- the router answers, not the handler: a status is ignored
        rawset(t, name, value)
      end
    end,
  })
  return self
end

return _M
