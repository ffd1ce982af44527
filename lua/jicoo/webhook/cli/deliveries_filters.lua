-- jicoo-webhook deliveries: which deliveries a command acts on. The options that choose them
-- (--state, --event, --uid, --since, --until, --error, --limit) read as a filter of the
-- journal's find, and the walk over every match, a page at a time: a journal of 100,000 dead
-- letters is never all in memory.
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local string_match = string.match
local string_gmatch = string.gmatch
local string_find = string.find
local string_gsub = string.gsub
local table_concat = table.concat
local math_min = math.min
local os_time = os.time

local _M = {}

-- The states in the order a command walks them: failed before dead, so that a retry (which
-- makes a dead delivery failed) never meets one delivery twice.
local ORDER = { "running", "failed", "dead", "done" }

-- What a command acts on when --state is not given.
_M.DEFAULT_STATES = {
  list = { "running", "failed", "dead" },
  retry = { "failed", "dead" },
  drop = { "failed", "dead" },
}

-- What --state may name for each command ("all": any state, in one walk).
_M.STATE_CHOICES = {
  list = { "running", "failed", "dead", "done", "all" },
  retry = { "failed", "dead" },
  drop = { "running", "failed", "dead", "done", "all" },
}

-- Records one find returns at most (a field, so that a spec can walk small pages).
_M.PAGE = 1000

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

-- --since and --until: an RFC 3339 date-time (ISO 8601 with its time zone), a date alone
-- (midnight UTC), or a duration meaning that long before now (30m, 2h, 3d, 1h30m). Unix
-- seconds, or nil and why, naming the option.
function _M.parse_time(option, text, now)
  if string_find(text, "^%d") and string_gsub(text, "%d+[smhdw]", "") == "" then
    local seconds = 0
    for number, unit in string_gmatch(text, "(%d+)([smhdw])") do
      seconds = seconds + tonumber(number) * UNITS[unit]
    end
    return (now or os_time()) - seconds
  end
  local core = require "jicoo.webhook.core"
  local date = text
  if string_match(text, "^%d%d%d%d%-%d%d%-%d%d$") then
    date = text .. "T00:00:00Z"
  elseif string_match(text, "^%d%d%d%d%-%d%d%-%d%d[Tt ]%d%d:%d%d:%d%d[.%d]*$") then
    return nil, option .. ": '" .. text .. "' has no time zone: add Z (UTC) or an offset"
      .. " such as +09:00"
  end
  local t = core.time(date)
  if not t then
    return nil, option .. " takes an ISO 8601 time (2024-03-01T10:00:00Z, 2024-03-01T19:00:00"
      .. "+09:00, 2024-03-01) or a duration ago (30m, 2h, 3d, 1h30m); got '" .. text .. "'"
  end
  return t
end

-- --state: one state or several, comma-separated, among choices; the list in walking order
-- ({ false } for "all": one walk over every state). Or nil and why.
function _M.parse_states(text, choices)
  local allowed, asked = {}, {}
  for _, name in ipairs(choices) do
    allowed[name] = true
  end
  for name in string_gmatch(text, "[^,]+") do
    if not allowed[name] then
      return nil, "--state takes " .. table_concat(choices, ", ") .. " (or several of them,"
        .. " comma-separated); got '" .. name .. "'"
    end
    asked[name] = true
  end
  if asked.all then
    return { false }
  end
  local states = {}
  for _, name in ipairs(ORDER) do
    if asked[name] then
      states[#states + 1] = name
    end
  end
  if #states == 0 then
    return nil, "--state names no state"
  end
  return states
end

-- --limit: a whole number of 1 or more.
function _M.parse_limit(text)
  local n = tonumber(text)
  if not n or n < 1 or n % 1 ~= 0 or not string_match(text, "^%d+$") then
    return nil, "--limit takes a whole number of 1 or more; got '" .. text .. "'"
  end
  return n
end

local FILTER_OPTIONS = { "event", "uid", "since", "until", "error" }

-- The find filter the options give (without state, limit and after).
function _M.filter_of(args)
  local filter = {}
  for _, name in ipairs(FILTER_OPTIONS) do
    filter[name] = args[name]
  end
  return filter
end

-- Whether any option that chooses deliveries was given (--state included).
function _M.has_filters(args)
  if args.state then
    return true
  end
  for _, name in ipairs(FILTER_OPTIONS) do
    if args[name] ~= nil then
      return true
    end
  end
  return false
end

local function query(filter, state, limit, after)
  local q = {}
  for name, value in pairs(filter) do
    q[name] = value
  end
  q.state, q.limit, q.after = state or nil, limit, after
  return q
end

-- Whether anything matches in states[i] after `after`, or in the states after it: true,
-- false, or nil, err.
local function more_match(journal, states, i, filter, after)
  for k = i, #states do
    local page, err = journal:find(query(filter, states[k], 1, k == i and after or nil))
    if not page then
      return nil, err
    end
    if #page > 0 then
      return true
    end
  end
  return false
end

-- Calls each(record) for every delivery that matches filter in states (a list from
-- parse_states), a state at a time, oldest first, at most limit of them (nil: no limit).
-- each returns true, or nil, err to stop. Returns true and whether more matched past the
-- limit, or nil, err (the journal's, or each's).
function _M.each_match(journal, states, filter, limit, each)
  local seen = 0
  for i, state in ipairs(states) do
    local after, first = nil, true
    while first or after do
      first = false
      local want = limit and math_min(_M.PAGE, limit - seen) or _M.PAGE
      if want == 0 then
        local more, err = more_match(journal, states, i, filter, after)
        if more == nil then
          return nil, err
        end
        return true, more
      end
      local page, next_after = journal:find(query(filter, state, want, after))
      if not page then
        return nil, next_after
      end
      for _, record in ipairs(page) do
        seen = seen + 1
        local ok, err = each(record)
        if not ok then
          return nil, err
        end
      end
      after = next_after
    end
  end
  return true, false
end

return _M
