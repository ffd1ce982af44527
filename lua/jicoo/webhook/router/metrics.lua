-- The receiver's metrics: counters and histograms kept in a dict, written out in Prometheus's
-- text format (version 0.0.4). Inside nginx the dict is a lua_shared_dict, so that every
-- worker's counts add up in one place; in plain Lua it is a table of this process.
--
-- A dict is anything with incr(key, value, init), set(key, value), get(key) and
-- get_keys(0), as ngx.shared.DICT has them; memory() makes one. A series is one key of the dict:
-- its name and labels as the exposition writes them (a histogram's buckets are counted one by
-- one, each under its own le, and added up when written out). What is counted, and where:
--
--   jicoo_webhook_deliveries_total{event, result}     every delivery answered after its
--       signature and payload were checked: handled, accepted (answered first), duplicate, waiting,
--       handler_failed, journal_failed, busy (503: the journal is full, or a copy is running)
--   jicoo_webhook_rejected_total{reason}              every request answered before that:
--       bad_signature, invalid_payload, too_large, method_not_allowed, server_error
--   jicoo_webhook_handler_runs_total{handler, outcome} and
--   jicoo_webhook_handler_duration_seconds{handler}   each handler run: ok or failed
--   jicoo_webhook_retries_total{event, result}        attempts the scheduler made: handled,
--       handler_failed
--   jicoo_webhook_dead_letters_total{event}           deliveries that ran out of attempts
--   jicoo_webhook_scheduler_passes_total, jicoo_webhook_scheduler_pass_duration_seconds and
--   jicoo_webhook_scheduler_last_pass_timestamp_seconds
--
-- and, read from the journal when written out (render's `journal` argument):
--
--   jicoo_webhook_journal_up                          1 when the journal answered
--   jicoo_webhook_journal_deliveries{state}           its records by state
--   jicoo_webhook_journal_oldest_due_age_seconds      how late the longest-waiting due one is
local type = type
local pcall = pcall
local setmetatable = setmetatable
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local string_format = string.format
local string_gsub = string.gsub
local string_match = string.match
local table_concat = table.concat
local table_sort = table.sort
local math_max = math.max
local math_floor = math.floor
local math_huge = math.huge

local _M = {}

_M.CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

-- Seconds: from a handler that answers at once to one that waits out a slow service.
_M.BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 }
local BUCKETS = _M.BUCKETS
local BUCKET_TEXT = {}
for i, bound in ipairs(BUCKETS) do
  BUCKET_TEXT[i] = string_format("%g", bound)
end

-- The families, in the order they are written: name, type, help.
local FAMILIES = {
  { "jicoo_webhook_deliveries_total", "counter",
    "Deliveries answered after their signature and payload were checked, by event and result." },
  { "jicoo_webhook_rejected_total", "counter",
    "Requests answered before the journal (no delivery recorded), by reason." },
  { "jicoo_webhook_handler_runs_total", "counter", "Handler runs, by handler and outcome." },
  { "jicoo_webhook_handler_duration_seconds", "histogram", "How long each handler run took." },
  { "jicoo_webhook_retries_total", "counter",
    "Attempts the scheduler made on journaled deliveries, by event and result." },
  { "jicoo_webhook_dead_letters_total", "counter",
    "Deliveries that ran out of attempts (dead letters), by event." },
  { "jicoo_webhook_scheduler_passes_total", "counter", "Passes of the retry scheduler." },
  { "jicoo_webhook_scheduler_pass_duration_seconds", "histogram",
    "How long a pass of the retry scheduler took." },
  { "jicoo_webhook_scheduler_last_pass_timestamp_seconds", "gauge",
    "When a pass of the retry scheduler last ended (Unix time)." },
  { "jicoo_webhook_journal_up", "gauge", "1 when the journal answered the last scrape, else 0." },
  { "jicoo_webhook_journal_deliveries", "gauge", "Records in the journal, by state." },
  { "jicoo_webhook_journal_oldest_due_age_seconds", "gauge",
    "Seconds since the longest-waiting due delivery was due (0: none is waiting)." },
}
_M.FAMILIES = FAMILIES

-- A label's value as the exposition quotes it.
local LABEL_ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }
local function quote(value)
  return '"' .. string_gsub(tostring(value), '[\\"\n]', LABEL_ESCAPES) .. '"'
end

-- The event names a label may hold; any other (a lenient parse lets unknown ones through) is
-- counted as "other", so that a sender cannot grow the series without bound.
local KNOWN_EVENTS = {}
for _, name in ipairs(require("jicoo.webhook.payload.types").EVENTS) do
  KNOWN_EVENTS[name] = true
end
local function event_label(event)
  return KNOWN_EVENTS[event] and event or "other"
end

---------------------------------------------------------------------------------------------
-- Dicts

local Memory = {}
Memory.__index = Memory

function Memory:incr(key, value, init)
  local now = (self.values[key] or init or 0) + value
  self.values[key] = now
  return now
end

function Memory:set(key, value)
  self.values[key] = value
  return true
end

function Memory:get(key)
  return self.values[key]
end

function Memory:get_keys()
  local keys = {}
  for key in pairs(self.values) do
    keys[#keys + 1] = key
  end
  return keys
end

-- A dict in this Lua state.
function _M.memory()
  return setmetatable({ values = {} }, Memory)
end

-- Whether value can hold the metrics (a dict as above).
function _M.is_dict(value)
  local t = type(value)
  if t ~= "table" and t ~= "userdata" then
    return false
  end
  for _, method in ipairs({ "incr", "set", "get", "get_keys" }) do
    local ok, fn = pcall(function() return value[method] end)
    if not ok or type(fn) ~= "function" then
      return false
    end
  end
  return true
end

---------------------------------------------------------------------------------------------
-- Counting: each series' key made once and kept (the receive path adds to a dict, no string
-- is built per delivery).

local Metrics = {}
Metrics.__index = Metrics

-- name{a="x",b="y"} for one or two label pairs, from the cache of family `name`.
local function series(self, name, label1, value1, label2, value2)
  local cache = self.keys[name]
  if not cache then
    cache = {}
    self.keys[name] = cache
  end
  local by_first = cache[value1]
  if label2 == nil then
    if not by_first then
      by_first = name .. "{" .. label1 .. "=" .. quote(value1) .. "}"
      cache[value1] = by_first
    end
    return by_first
  end
  if not by_first then
    by_first = {}
    cache[value1] = by_first
  end
  local key = by_first[value2]
  if not key then
    key = name .. "{" .. label1 .. "=" .. quote(value1) .. "," .. label2 .. "=" .. quote(value2)
      .. "}"
    by_first[value2] = key
  end
  return key
end

local function add(self, key, n)
  local ok, err = self.dict:incr(key, n, 0)
  if not ok and not self.full then
    -- once: a full shared dict loses counts, never deliveries
    self.full = true
    self.log("warn", "metrics: cannot count " .. key .. ": " .. tostring(err)
      .. " (make the lua_shared_dict larger)")
  end
end

-- A series' labels in braces: `labels` (or none) and `extra` (or none); "" when neither.
local function braced(labels, extra)
  local all = labels and (extra and labels .. "," .. extra or labels) or extra
  return all and "{" .. all .. "}" or ""
end

-- The keys of one histogram's series: its buckets (one per bound, the last +Inf), sum, count.
-- (No closure in here: closing an upvalue on return is a bytecode LuaJIT does not compile, and
-- the traces of every request through it would stop there.)
local function histogram_keys(self, name, label, value)
  local cache = self.histograms[name]
  if not cache then
    cache = {}
    self.histograms[name] = cache
  end
  local index = value == nil and "" or value
  local keys = cache[index]
  if not keys then
    local labels = label and label .. "=" .. quote(value) or nil
    keys = { sum = name .. "_sum" .. braced(labels), count = name .. "_count" .. braced(labels) }
    for i, text in ipairs(BUCKET_TEXT) do
      keys[i] = name .. "_bucket" .. braced(labels, 'le="' .. text .. '"')
    end
    keys[#BUCKETS + 1] = name .. "_bucket" .. braced(labels, 'le="+Inf"')
    cache[index] = keys
  end
  return keys
end

local function observe(self, name, label, value, seconds)
  local keys = histogram_keys(self, name, label, value)
  local i = 1
  while i <= #BUCKETS and seconds > BUCKETS[i] do
    i = i + 1
  end
  add(self, keys[i], 1)   -- its own bucket only: render adds them up
  add(self, keys.sum, seconds)
  add(self, keys.count, 1)
end

-- A counter of metrics in dict (nil: a memory one); log(level, message) says when it is full.
function _M.new(dict, log)
  return setmetatable({ dict = dict or _M.memory(), log = log, keys = {}, histograms = {} },
    Metrics)
end

function Metrics:delivery(event, result)
  add(self, series(self, "jicoo_webhook_deliveries_total", "event", event_label(event), "result",
    result), 1)
end

function Metrics:rejected(reason)
  add(self, series(self, "jicoo_webhook_rejected_total", "reason", reason), 1)
end

function Metrics:handler_run(handler, ok, seconds)
  add(self, series(self, "jicoo_webhook_handler_runs_total", "handler", handler, "outcome",
    ok and "ok" or "failed"), 1)
  observe(self, "jicoo_webhook_handler_duration_seconds", "handler", handler, seconds)
end

function Metrics:retry(event, result)
  add(self, series(self, "jicoo_webhook_retries_total", "event", event_label(event), "result",
    result), 1)
end

function Metrics:dead_letter(event)
  add(self, series(self, "jicoo_webhook_dead_letters_total", "event", event_label(event)), 1)
end

function Metrics:scheduler_pass(seconds, ended_at)
  add(self, "jicoo_webhook_scheduler_passes_total", 1)
  observe(self, "jicoo_webhook_scheduler_pass_duration_seconds", nil, nil, seconds)
  self.dict:set("jicoo_webhook_scheduler_last_pass_timestamp_seconds", ended_at)
end

-- When a scheduler's pass last ended, in any worker (nil: none yet).
function Metrics:last_pass()
  return self.dict:get("jicoo_webhook_scheduler_last_pass_timestamp_seconds")
end

---------------------------------------------------------------------------------------------
-- Writing out

local function number_text(n)
  if n == math_huge then
    return "+Inf"
  elseif n == math_floor(n) and n > -1e15 and n < 1e15 then
    return string_format("%d", n)
  end
  return string_format("%.17g", n)
end

-- The exposition: every family with HELP and TYPE, then its series, sorted; a histogram's
-- buckets added up in the order of their bounds. journal: the journal's gauges, { up = boolean,
-- states = { state = n }, oldest_due_age = seconds }, or nil (none written).
function Metrics:render(journal)
  local by_family = {}
  for _, key in ipairs(self.dict:get_keys(0)) do
    local name = string_match(key, "^[%w_]+")
    by_family[name] = by_family[name] or {}
    by_family[name][#by_family[name] + 1] = key
  end
  local lines = {}
  for _, family in ipairs(FAMILIES) do
    local name, kind, help = family[1], family[2], family[3]
    lines[#lines + 1] = "# HELP " .. name .. " " .. help
    lines[#lines + 1] = "# TYPE " .. name .. " " .. kind
    if kind == "histogram" then
      -- one label set per _count key; its buckets from histogram_keys, in order
      local counts = by_family[name .. "_count"] or {}
      table_sort(counts)
      for _, count_key in ipairs(counts) do
        local label, value = string_match(count_key, '^[%w_]+{(%w+)="(.*)"}$')
        if label then
          value = string_gsub(value, '\\(.)', { ["\\"] = "\\", ['"'] = '"', n = "\n" })
        end
        local keys = histogram_keys(self, name, label, value)
        local total = 0
        for i = 1, #BUCKETS do
          total = total + (self.dict:get(keys[i]) or 0)
          lines[#lines + 1] = keys[i] .. " " .. number_text(total)
        end
        local count = self.dict:get(keys.count) or 0
        lines[#lines + 1] = keys[#BUCKETS + 1] .. " " .. number_text(math_max(count, total))
        lines[#lines + 1] = keys.sum .. " " .. number_text(self.dict:get(keys.sum) or 0)
        lines[#lines + 1] = keys.count .. " " .. number_text(count)
      end
    elseif name == "jicoo_webhook_journal_up" then
      if journal then
        lines[#lines + 1] = name .. " " .. (journal.up and "1" or "0")
      end
    elseif name == "jicoo_webhook_journal_deliveries" then
      if journal and journal.up then
        local states = {}
        for state in pairs(journal.states) do
          states[#states + 1] = state
        end
        table_sort(states)
        for _, state in ipairs(states) do
          lines[#lines + 1] = name .. "{state=" .. quote(state) .. "} "
            .. number_text(journal.states[state])
        end
      end
    elseif name == "jicoo_webhook_journal_oldest_due_age_seconds" then
      if journal and journal.up then
        lines[#lines + 1] = name .. " " .. number_text(journal.oldest_due_age or 0)
      end
    else
      local keys = by_family[name] or {}
      table_sort(keys)
      for _, key in ipairs(keys) do
        lines[#lines + 1] = key .. " " .. number_text(self.dict:get(key) or 0)
      end
    end
  end
  lines[#lines + 1] = ""
  return table_concat(lines, "\n")
end

return _M
