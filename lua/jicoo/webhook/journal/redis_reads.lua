-- The Redis journal's reads of many records: list, find and counts (journal/redis.lua has the
-- rest and gives these as its methods).
--
-- find answers oldest first (received_at, then key), which is the order of a sorted set of keys
-- scored by received_at (Redis orders equal scores by member, byte by byte), so each index find
-- may read is such a set: `received`, a booking's, a state's. It reads the narrowest one the
-- filter allows (the uid's, else the state's, else `received`) from the cursor, in a script that
-- filters by the other fields (event and error text have no index) and reads at most FIND_READS
-- entries per round trip: a page costs one round trip per FIND_READS entries read, and never
-- reads a record before the cursor or outside since and until. Done records have no s:done set:
-- they are most of the journal, and `received` serves them.
--
-- counts is one script. Running, failed and dead are counters the scripts change with the
-- records; done is the size of each done:EVENT set, so that no expiry can leave a count behind.
-- A done record is counted until the sweep (journal/redis.lua's) removes it: while the
-- scheduler runs, up to SWEEP_EVERY seconds past its expires_at (longer when more than
-- SWEEP_BATCH expire per pass, until the sweep catches up), as the SQLite journal counts its
-- own until its sweep. The other counts are off only when a record changes behind the scripts'
-- back: a DEL by hand, an eviction (run Redis with maxmemory-policy noeviction), or the
-- previous version of this module changing a record during a rolling upgrade; the record stays
-- counted in its old state for good.
local type = type
local error = error
local ipairs = ipairs
local tonumber = tonumber
local string_sub = string.sub
local string_find = string.find
local table_sort = table.sort
local math_min = math.min
local math_floor = math.floor
local math_huge = math.huge

local hashes = require "jicoo.webhook.journal.redis_record"
local scripts = require "jicoo.webhook.journal.redis_scripts"

local _M = {}

local FETCH_BATCH = 100     -- records fetched per round trip when listing
local SCAN_COUNT = 1000     -- set members named per round trip when listing
local FIND_READS = 200      -- index entries one find script reads at most (a few ms of Redis)
local FILTER_STRINGS = { "state", "event", "uid", "error" }
local STATES = hashes.STATES
local hash_key, record_of = hashes.hash_key, hashes.record_of
local failure, unexpected = hashes.failure, hashes.unexpected

_M.FIND_READS = FIND_READS

-- Appends to list the members of the sorted set `set` that are not in seen yet, or nil, err.
-- ZSCAN, a page of about SCAN_COUNT a round trip: no reply grows with the set, and a member
-- there from the first page to the last is named (once or more) though others come and go.
local function add_members(self, set, list, seen)
  local cursor = "0"
  repeat
    local reply, err, code = self.client:call("ZSCAN", set, cursor, "COUNT", SCAN_COUNT)
    if reply == nil then
      return failure(self, err, code)
    elseif type(reply) ~= "table" or type(reply[1]) ~= "string" or type(reply[2]) ~= "table" then
      return unexpected(self, "ZSCAN")
    end
    cursor = reply[1]
    local page = reply[2]
    for i = 1, #page - 1, 2 do   -- member, score
      local member = page[i]
      if type(member) == "string" and not seen[member] then
        seen[member] = true
        list[#list + 1] = member
      end
    end
  until cursor == "0"
  return true
end

-- The keys of the records a list must read, or nil, err: the scheduler's and the dead letters'
-- sets as before the indexes (records written before them included), the done ones from their
-- events' sets, and for "all" every record's set besides.
local function list_keys(self, state)
  local sets
  if state == "running" or state == "failed" then
    sets = { self.due_key }
  elseif state == "dead" then
    sets = { self.dead_key }
  elseif state == "all" then
    sets = { self.received_key, self.due_key, self.dead_key }
  else
    local events, err, code = self.client:call("SMEMBERS", self.events_key)
    if events == nil then
      return failure(self, err, code)
    elseif type(events) ~= "table" then
      return unexpected(self, "SMEMBERS")
    end
    sets = {}
    for _, event in ipairs(events) do
      if type(event) == "string" then
        sets[#sets + 1] = self.prefix .. "done:" .. event
      end
    end
  end
  local keys, seen = {}, {}
  for _, set in ipairs(sets) do
    local ok, err = add_members(self, set, keys, seen)
    if not ok then
      return nil, err
    end
  end
  return keys
end

function _M.list(self, state)
  if state ~= "all" and not STATES[state] then
    error("journal:list: state must be one of running, failed, done, dead, all", 2)
  end
  local keys, err = list_keys(self, state)
  if not keys then
    return nil, err
  end
  local list = {}
  for first = 1, #keys, FETCH_BATCH do
    local commands = {}
    for i = first, math_min(first + FETCH_BATCH - 1, #keys) do
      commands[#commands + 1] = { "HGETALL", hash_key(self, keys[i]) }
    end
    local replies, code
    replies, err, code = self.client:pipeline(commands)
    if not replies then
      return failure(self, err, code)
    end
    for i, flat in ipairs(replies) do
      local name = commands[i][2]
      local record, why
      if type(flat) == "table" and flat.err then
        record, why = nil, "redis " .. self.address .. ": " .. flat.err
      else
        record, why = record_of(flat, name)
      end
      if record == nil then
        list[#list + 1] = { state = "corrupt", file = name, message = why }
      elseif record and (state == "all" or record.state == state) then
        list[#list + 1] = record
      end
    end
  end
  table_sort(list, function(a, b)
    return (a.key or a.file) < (b.key or b.file)
  end)
  return list
end

local function check_filter(filter)
  if filter == nil then
    return {}
  elseif type(filter) ~= "table" then
    error("journal:find: filter must be a table, got " .. type(filter), 3)
  end
  for _, name in ipairs(FILTER_STRINGS) do
    if filter[name] ~= nil and type(filter[name]) ~= "string" then
      error("journal:find: filter." .. name .. " must be a string, got " .. type(filter[name]), 3)
    end
  end
  for _, name in ipairs({ "since", "until" }) do
    if filter[name] ~= nil and type(filter[name]) ~= "number" then
      error("journal:find: filter." .. name .. " must be a number, got " .. type(filter[name]), 3)
    end
  end
  local limit, after = filter.limit, filter.after
  if limit ~= nil and (type(limit) ~= "number" or limit < 1 or limit ~= math_floor(limit)) then
    error("journal:find: filter.limit must be a positive integer", 3)
  end
  if after ~= nil and (type(after) ~= "table" or type(after.received_at) ~= "number"
      or type(after.key) ~= "string") then
    error("journal:find: filter.after must be the cursor a page gave ({ received_at =, key = })", 3)
  end
  return filter
end

-- The sorted set find reads (see the header): the narrowest the filter allows.
local function find_index(self, filter)
  if filter.uid then
    return self.prefix .. "u:" .. filter.uid
  elseif filter.state and filter.state ~= "done" then
    return self.prefix .. "s:" .. filter.state
  end
  return self.received_key
end

-- Appends to records the matches one run of the FIND script gave ({ member, score, fields and
-- values }, ...); false when they are not that.
local function add_found(self, matches, found)
  for _, match in ipairs(matches) do
    if type(match) ~= "table" or type(match[1]) ~= "string" then
      return false
    end
    local name = hash_key(self, match[1])
    local record, why = record_of(match[3], name)
    if not record then
      -- the key and time the index holds, so that a page may end on it
      record = { state = "corrupt", file = name, message = why or "not a hash", key = match[1],
        received_at = tonumber(match[2]) }
    end
    found[#found + 1] = record
  end
  return true
end

-- filter: state, event, uid, since, until (received_at), error (text in an error's handler or
-- message), limit, after (the cursor a previous page gave). The records (without their bodies),
-- oldest first, and the next page's cursor or nil. The script reads FIND_READS index entries at
-- most a run; it runs again, from the last entry it read, until the page is full or the index
-- has nothing more in range.
function _M.find(self, filter)
  filter = check_filter(filter)
  local limit = filter.limit
  local want = limit and limit + 1 or math_huge   -- one more tells whether a next page exists
  local index = find_index(self, filter)
  local after = filter.after
  local at, key = after and after.received_at or "", after and after.key or ""
  local records = {}
  local exhausted
  repeat
    local args = { self.prefix, filter.since or "", filter["until"] or "", at, key,
      math_min(want - #records, FIND_READS), FIND_READS }
    for _, name in ipairs(FILTER_STRINGS) do
      if filter[name] then
        args[#args + 1] = name
        args[#args + 1] = filter[name]
      end
    end
    local reply, err, code = self.client:eval_script(scripts.FIND, { index }, args)
    if reply == nil then
      return failure(self, err, code)
    elseif type(reply) ~= "table" or type(reply[1]) ~= "table"
        or not add_found(self, reply[1], records) then
      return unexpected(self, "the journal's find")
    end
    exhausted, at, key = reply[2] == 1, reply[3], reply[4]
  until exhausted or #records >= want or type(key) ~= "string" or key == ""
  local next_after
  if limit and #records > limit then
    records[#records] = nil
    local last = records[#records]
    next_after = { received_at = last.received_at, key = last.key }
  end
  return records, next_after
end

-- { states = { [state] = n }, events = { [event] = { [state] = n } } }, in one round trip.
function _M.counts(self)
  local reply, err, code = self.client:eval_script(scripts.COUNTS,
    { self.counts_key, self.events_key }, { self.prefix })
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" or type(reply[1]) ~= "table" or type(reply[2]) ~= "table"
      or type(reply[3]) ~= "table" then
    return unexpected(self, "the journal's counts")
  end
  local states, events = {}, {}
  local function add(state, event, n)
    n = tonumber(n)
    if n and n > 0 then   -- a state or event without records is absent, not 0
      states[state] = (states[state] or 0) + n
      local by_state = events[event] or {}
      by_state[state] = n
      events[event] = by_state
    end
  end
  local counters = reply[1]
  for i = 1, #counters - 1, 2 do
    local field = counters[i]
    local colon = type(field) == "string" and string_find(field, ":", 1, true)
    if colon then   -- STATE:EVENT (a state has no colon; an event may)
      add(string_sub(field, 1, colon - 1), string_sub(field, colon + 1), counters[i + 1])
    end
  end
  for i, event in ipairs(reply[2]) do
    if type(event) == "string" then
      add("done", event, reply[3][i])
    end
  end
  return { states = states, events = events }
end

return _M
