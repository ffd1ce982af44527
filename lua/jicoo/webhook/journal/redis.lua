-- The Redis journal: the records in a redis-server that every nginx machine (and the command
-- line) shares. Durable as far as the server is (its AOF or RDB settings say how far).
--
-- Every key of a journal starts with its prefix (PREFIX, "jicoo-webhook:" by default):
--
--   PREFIX d:KEY       a hash per delivery: key, event, uid, body, received_at, state, attempts,
--                      next_at, lease_until, token, version, finished_at, expires_at, handlers
--                      and errors as JSON text, and `indexed` (the entries below are kept for
--                      it; get and list leave the field out). A done one loses its body.
--   PREFIX due         a sorted set of the keys the scheduler must look at: a running one scored
--                      by lease_until, a failed one by next_at
--   PREFIX dead        a sorted set of the dead letters, scored by finished_at
--   PREFIX received    a sorted set of every record's key, scored by received_at
--   PREFIX u:UID       a sorted set of one booking's keys, scored by received_at
--   PREFIX s:STATE     sorted sets of the running, the failed and the dead records' keys, scored
--                      by received_at
--   PREFIX done:EVENT  a sorted set of one event's done records, scored by expires_at
--   PREFIX events      a set of the events that have a done:EVENT set
--   PREFIX counts      a hash of counters, "STATE:EVENT" -> n, for running, failed and dead
--
-- Hashes and sorted sets rather than a stream: a delivery is found again by its key (copies are
-- told from new ones), each handler's success is written into its record, and a retry is due at
-- a time of its own; a stream is an append-only log read in order and has none of the three.
--
-- acquire, update, rearm and remove each run one script (EVALSHA, one round trip; the scripts
-- are in journal/redis_scripts.lua), so that a record, the scheduler's sets and the indexes
-- change together, atomically, whoever else is at them. Any failure of Redis (refused, timed
-- out, an error reply) is nil, err naming the server: never a guess.
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
-- Done records expire: due(), the scheduler's call, runs a sweep at most every SWEEP_EVERY
-- seconds (at once again when the last one was full) that removes up to SWEEP_BATCH done records
-- whose expires_at has come, with their entries. EXPIRE on the hash at the ttl and a day is a
-- backstop for a journal whose due() nobody calls: the hash then goes, the sweep forgets its
-- `received` and done:EVENT entries once due() runs, and its booking's set keeps its key (find
-- skips it).
--
-- counts is one script. Running, failed and dead are counters the scripts change with the
-- records; done is the size of each done:EVENT set, so that no expiry can leave a count behind.
-- A done record is counted until the sweep removes it: while the scheduler runs, up to
-- SWEEP_EVERY seconds past its expires_at (longer when more than SWEEP_BATCH expire per pass,
-- until the sweep catches up), as the SQLite journal counts its own until its sweep. The other
-- counts are off only when a record changes behind the scripts' back: a DEL by hand, an
-- eviction (run Redis with maxmemory-policy noeviction), or the previous version of this module
-- changing a record during a rolling upgrade; the record stays counted in its old state for good.
--
-- An upgrade from the version without indexes: the records it wrote have no `indexed` field and
-- are in no index, so find and counts do not see them, while get, acquire, due, list, rearm and
-- remove do as before (list("done") and list("all") excepted: they read the indexes, not the
-- whole key space, and miss the done records written before). Each of those records joins the
-- indexes, in the state it has then, the first time a script changes it (an attempt, an update,
-- a rearm); a done one never does, and Redis drops it at its ttl, as before.
--
-- Options: prefix ("jicoo-webhook:"), ttl (the seconds a done record is kept, journal.DEFAULT_TTL),
-- and the client's (lua/jicoo/net/redis.lua): host, port, path, password, username, db, the
-- timeouts and the nginx pool's size and keepalive. A record that cannot be read is listed (and
-- found) as { state = "corrupt", file = the hash's name, error = why }.
--
-- Scripts name the record, due and dead keys in KEYS and build the index keys from the prefix
-- (they depend on the record's uid and event): a Redis Cluster cannot serve this journal unless
-- its prefix holds a hash tag; one server (with replicas) can.
local setmetatable = setmetatable
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local next = next
local require = require
local string_sub = string.sub
local string_find = string.find
local table_sort = table.sort
local math_ceil = math.ceil
local math_min = math.min
local math_max = math.max
local math_floor = math.floor
local math_huge = math.huge

local json = require "jicoo.webhook.payload.json"
local journal = require "jicoo.webhook.journal"
local redis = require "jicoo.net.redis"
local scripts = require "jicoo.webhook.journal.redis_scripts"
local options = require "jicoo.webhook.options"

local _M = {}

local DEFAULT_PREFIX = "jicoo-webhook:"
local FETCH_BATCH = 100     -- records fetched per round trip when listing
local SCAN_COUNT = 1000     -- set members named per round trip when listing
local FIND_READS = 200      -- index entries one find script reads at most (a few ms of Redis)
local SWEEP_EVERY = 5       -- seconds between two sweeps of expired done records
local SWEEP_BATCH = 500     -- done records one sweep removes at most
local BACKSTOP = 86400      -- seconds a done record's hash outlives its ttl should no sweep run

local NUMBER_FIELDS = {
  received_at = true, attempts = true, next_at = true, lease_until = true, version = true,
  finished_at = true, expires_at = true,
}
local JSON_FIELDS = { handlers = true, errors = true }
local INTERNAL_FIELDS = { indexed = true }
local STATES = {}
for _, state in ipairs(journal.STATES) do
  STATES[state] = true
end
local FILTER_STRINGS = { "state", "event", "uid", "error" }

local Redis = {}
Redis.__index = Redis
Redis.__name = "jicoo.webhook.journal.redis"   -- store.is_ours: it returns, never raises, on failure

-- Its own options, beside the client's (net/redis.lua).
local OPTIONS = options.schema("journal.redis", {
  { "prefix", "string", default = DEFAULT_PREFIX },
  { "ttl", "number", default = journal.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
})
local CLIENT_OPTIONS = redis.option_names()

function _M.new(opts)
  local o = OPTIONS:check(opts, 3, CLIENT_OPTIONS)
  local client = redis.new(redis.client_options(opts, OPTIONS:name_set(), "journal.redis", 3))
  local prefix, ttl = o.prefix, o.ttl
  return setmetatable({
    client = client,
    address = client.address,
    prefix = prefix,
    due_key = prefix .. "due",
    dead_key = prefix .. "dead",
    received_key = prefix .. "received",
    events_key = prefix .. "events",
    counts_key = prefix .. "counts",
    ttl = math_ceil(ttl),
    durable = true,
    swept_at = -math_huge,   -- the `now` of the last sweep (due)
    sweep_full = false,      -- whether it removed all it may: more may be waiting
  }, Redis)
end

_M.FIND_READS = FIND_READS   -- for the specs' count of round trips

local function check_key(key, method)
  if type(key) ~= "string" then
    error("journal:" .. method .. ": key must be a string, got " .. type(key), 3)
  end
end

local function check_number(value, what, method)
  if type(value) ~= "number" then
    error("journal:" .. method .. ": " .. what .. " must be a number, got " .. type(value), 3)
  end
end

local function record_key(self, key)
  return self.prefix .. "d:" .. key
end

-- nil and the message of a failed call (an error reply named after the server it came from).
local function failure(self, err, code)
  if code == "reply" then
    return nil, "redis " .. self.address .. ": " .. tostring(err)
  end
  return nil, tostring(err)
end

local function unexpected(self, what)
  return nil, "redis " .. self.address .. ": unexpected reply to " .. what
end

-- Runs a script on one record: KEYS record, due, dead; ARGV the prefix, then args.
local function run(self, script, key, args)
  return self.client:eval_script(script, { record_key(self, key), self.due_key, self.dead_key },
    args)
end

-- A field's value as the hash holds it.
local function field_text(name, value)
  local kind = type(value)
  if kind == "table" then
    if name == "errors" and next(value) == nil then
      return "[]"
    end
    return json.encode(value)
  elseif kind == "string" or kind == "number" then
    return value
  end
  error("journal.redis: field " .. tostring(name) .. " cannot be a " .. kind, 4)
end

-- Appends the fields of a record (or of changes) to args as field, value, ...
local function add_fields(args, fields)
  for name, value in pairs(fields) do
    args[#args + 1] = name
    args[#args + 1] = field_text(name, value)
  end
end

-- The record an HGETALL reply (or find's list of fields and values) holds: the record, false
-- when it is empty, or nil, err.
local function record_of(flat, name)
  if type(flat) ~= "table" then
    return nil, "corrupt record " .. name .. ": not a hash"
  elseif #flat == 0 then
    return false
  end
  local record = {}
  for i = 1, #flat - 1, 2 do
    local field, value = flat[i], flat[i + 1]
    if NUMBER_FIELDS[field] then
      local number = tonumber(value)
      if not number then
        return nil, "corrupt record " .. name .. ": " .. field .. " is not a number"
      end
      record[field] = number
    elseif JSON_FIELDS[field] then
      local decoded, msg = journal.decode_json(value)
      if type(decoded) ~= "table" then
        return nil, "corrupt record " .. name .. ": " .. field .. ": " .. tostring(msg)
      end
      record[field] = decoded
    elseif not INTERNAL_FIELDS[field] then
      record[field] = value
    end
  end
  if type(record.key) ~= "string" or not STATES[record.state] then
    return nil, "corrupt record " .. name .. ": not a journal record"
  end
  return record
end

-- If the reply to an acquire is lost after it was sent (a read timeout, a dropped connection),
-- the script may have run: the record is then running under a lease nobody holds, and the
-- scheduler takes it over once the lease runs out. So a lost reply is only nil, err.
function Redis:acquire(key, now, lease, new, take_failed)
  check_key(key, "acquire")
  check_number(now, "now", "acquire")
  check_number(lease, "lease", "acquire")
  local lease_until = now + lease
  local fresh = new and journal.running(new, now, lease)
  local args = { self.prefix, key, now, lease_until, take_failed and "1" or "0",
    fresh and fresh.token or journal.token() }
  if fresh then
    -- what the indexes need, then the record
    args[7] = type(fresh.event) == "string" and fresh.event or ""
    args[8] = type(fresh.uid) == "string" and fresh.uid or ""
    args[9] = type(fresh.received_at) == "number" and fresh.received_at or now
    add_fields(args, fresh)
  end
  local reply, err, code = run(self, scripts.ACQUIRE, key, args)
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" or type(reply[1]) ~= "string" then
    return unexpected(self, "the journal's acquire")
  elseif reply[1] == "absent" then
    return "absent"
  elseif reply[1] == "new" then
    return "new", fresh
  end
  local record
  record, err = record_of(reply[2], record_key(self, key))
  if not record then
    return nil, err or ("redis " .. self.address .. ": " .. key .. " vanished")
  end
  return reply[1], record
end

function Redis:update(key, token, changes, now)
  check_key(key, "update")
  if type(token) ~= "string" then
    error("journal:update: token must be a string, got " .. type(token), 2)
  end
  if type(changes) ~= "table" then
    error("journal:update: changes must be a table, got " .. type(changes), 2)
  end
  for name, value in pairs(changes) do
    if NUMBER_FIELDS[name] and type(value) ~= "number" then
      error("journal:update: changes." .. name .. " must be a number, got " .. type(value), 2)
    elseif name == "state" and not STATES[value] then
      error("journal:update: changes.state must be a state, got " .. tostring(value), 2)
    end
  end
  now = now or 0
  local expires_at = changes.expires_at or now + self.ttl
  local args = { self.prefix, key, token, now, math_max(math_ceil(expires_at - now), 0) + BACKSTOP }
  add_fields(args, changes)
  if changes.state == "done" and changes.expires_at == nil then
    args[#args + 1] = "expires_at"
    args[#args + 1] = expires_at
  end
  local reply, err, code = run(self, scripts.UPDATE, key, args)
  if reply == nil then
    return failure(self, err, code)
  end
  return reply == 1
end

-- Removes the done records whose time has come (see the header): true, or nil, err.
local function sweep(self, now)
  if now - self.swept_at < SWEEP_EVERY and not self.sweep_full then
    return true
  end
  local swept, err, code = self.client:eval_script(scripts.SWEEP, { self.events_key },
    { self.prefix, now, SWEEP_BATCH })
  if swept == nil then
    return failure(self, err, code)
  elseif type(swept) ~= "number" then
    return unexpected(self, "the journal's sweep")
  end
  self.swept_at, self.sweep_full = now, swept >= SWEEP_BATCH
  return true
end

function Redis:due(now, limit)
  check_number(now, "now", "due")
  check_number(limit, "limit", "due")
  local swept, err = sweep(self, now)
  if not swept then
    return nil, err
  end
  local keys, code
  keys, err, code = self.client:call("ZRANGEBYSCORE", self.due_key, "-inf", now, "LIMIT", 0, limit)
  if keys == nil then
    return failure(self, err, code)
  elseif type(keys) ~= "table" then
    return unexpected(self, "ZRANGEBYSCORE")
  end
  return keys, {}
end

function Redis:get(key)
  check_key(key, "get")
  local name = record_key(self, key)
  local flat, err, code = self.client:call("HGETALL", name)
  if flat == nil then
    return failure(self, err, code)
  end
  local record
  record, err = record_of(flat, name)
  if record == nil then
    return nil, err
  end
  return record or nil
end

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

function Redis:list(state)
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
      commands[#commands + 1] = { "HGETALL", record_key(self, keys[i]) }
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
        list[#list + 1] = { state = "corrupt", file = name, error = why }
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
local function add_found(self, matches, records)
  for _, match in ipairs(matches) do
    if type(match) ~= "table" or type(match[1]) ~= "string" then
      return false
    end
    local name = record_key(self, match[1])
    local record, why = record_of(match[3], name)
    if not record then
      -- the key and time the index holds, so that a page may end on it
      record = { state = "corrupt", file = name, error = why or "not a hash", key = match[1],
        received_at = tonumber(match[2]) }
    end
    records[#records + 1] = record
  end
  return true
end

-- filter: state, event, uid, since, until (received_at), error (text in an error's handler or
-- message), limit, after (the cursor a previous page gave). The records (without their bodies),
-- oldest first, and the next page's cursor or nil. The script reads FIND_READS index entries at
-- most a run; it runs again, from the last entry it read, until the page is full or the index
-- has nothing more in range.
function Redis:find(filter)
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
function Redis:counts()
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

function Redis:rearm(key, now)
  check_key(key, "rearm")
  check_number(now, "now", "rearm")
  local reply, err, code = run(self, scripts.REARM, key, { self.prefix, key, now })
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" then
    return unexpected(self, "the journal's rearm")
  elseif reply[1] == "absent" then
    return nil, "not found"
  elseif reply[1] == "refused" then
    return false, key .. " is " .. tostring(reply[2]) .. ", not failed or dead"
  end
  local record
  record, err = record_of(reply[2], record_key(self, key))
  if not record then
    return nil, err or "not found"
  end
  return record
end

function Redis:remove(key)
  check_key(key, "remove")
  local reply, err, code = run(self, scripts.REMOVE, key, { self.prefix, key })
  if reply == nil then
    return failure(self, err, code)
  elseif reply == 0 then
    return nil, "not found"
  end
  return true
end

return _M
