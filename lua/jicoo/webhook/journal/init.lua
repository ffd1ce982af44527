-- The journal of deliveries: what the router received, and how far each delivery got.
--
-- A record is the delivery's claim too, keyed by ev:key():
--
--   key, event, uid, body, received_at   the delivery as received (body: its raw bytes)
--   state         "running" (an attempt holds the lease), "failed" (due again at next_at),
--                 "done" (every handler succeeded; kept until expires_at, without its body) or
--                 "dead" (out of attempts; kept until an operator retries or drops it)
--   attempts      attempts started, counted for good (an operator's retry does not reset them)
--   budget_from   the attempts made before the last rearm (0 or absent: never re-armed): the
--                 router's retry budget counts the attempts since, so that a retried delivery
--                 gets as many attempts again while its attempts go on counting
--   rearmed_at    when an operator last re-armed it (absent: never)
--   handlers      { [label] = true } for each handler that succeeded (never run again)
--   errors        the last attempt's failures: { { handler = label, message = text }, ... }
--   next_at, lease_until, token, finished_at, expires_at, version
--
-- A journal is any table with these methods (the backends: memory.lua, sqlite.lua, redis.lua):
--
--   acquire(key, now, lease, new, take_failed) -> outcome, record, alone | nil, err
--       Atomically, as decide() below says: "new" (no record: `new` written as a running one),
--       "taken" (a running one whose lease ran out, or a failed one that is due, or any failed
--       one with take_failed) or "absent" (no record and no `new`) change the record; "busy",
--       "waiting", "done" and "dead" leave it. For new and taken the record comes back running,
--       under a fresh token, its lease until now + lease, its attempts one more, and `alone`
--       says whether the journal holds no other record of its booking (its uid): true, false,
--       or nil when it cannot say. The router's booking order skips its look at the booking's
--       records (find) when alone is true.
--   update(key, token, changes, now) -> true, alone | false (the lease is not this token's) |
--       nil, err
--       Sets the fields in `changes` (among state, handlers, errors, next_at, lease_until,
--       finished_at, attempts, expires_at) on the running record `token` holds; version goes
--       up; a done record keeps no body. `alone` as acquire's, after a change that ends the
--       record's running (a state other than running: what the router's booking order looks
--       at); nil after one that leaves it running, which looks at no other record.
--   due(now, limit) -> { key, ... } | nil, err     running ones past their lease, failed ones due
--   get(key) -> record | nil (absent) | nil, err
--   list(state) -> { record, ... } | nil, err      state: a state name or "all"; a record that
--       cannot be read is listed as { state = "corrupt", file = name, message = why }
--   rearm(key, now) -> record | nil, "not found" | false, why   a failed or dead one: due now,
--       with a fresh budget of attempts (an operator's retry): its attempts kept, budget_from set
--       to them and rearmed_at to now
--   remove(key) -> true | nil, "not found" | nil, err
--   durable       whether a record survives the process (and a machine crash)
--
-- and answers these questions without reading every record (where it keeps an index):
--
--   find(filter) -> { record, ... }, after | nil, err
--       The records (without their bodies) that match every field of filter given: state,
--       event, uid, since and until (received_at, until excluded), error (text found in an
--       error's handler or message); oldest first (received_at, then key); `limit` of them
--       after `after`, the cursor a previous page gave; `after` is nil on the last page.
--   counts() -> { states = { [state] = n }, events = { [event] = { [state] = n } } } | nil, err
--
-- and, where it can fail apart from a delivery (a folder, a server), says whether it takes one:
--
--   check(now) -> true | nil, err, code       a write made and kept now (the health endpoint)
local type = type
local ipairs = ipairs
local require = require
local tostring = tostring
local string_find = string.find
local table_sort = table.sort

local core = require "jicoo.webhook.core"
local token = require "jicoo.webhook.journal.token"

local _M = {}

_M.STATES = { "running", "failed", "done", "dead" }

-- How long a done record (and a claim) is kept, in seconds, unless a journal is told otherwise:
-- declared here once, for every journal and claim store.
_M.DEFAULT_TTL = 3 * 24 * 3600

-- The JSON a backend wrote, read back: records are the journal's own, so the limits meant for
-- hostile input do not apply (a handler's label is a key, and may be long).
local MAX = 2147483647
local OWN_JSON = { null = false, max_size = MAX, max_string = MAX, max_key = MAX, max_keys = MAX,
  max_items = MAX, max_values = MAX }

function _M.decode_json(text)
  return core.decode(text, OWN_JSON)
end

-- What acquire does to a delivery whose record is `record` (nil: none): the one definition of
-- the journal's claim. redis.lua's ACQUIRE script says the same in Redis; the journal spec
-- holds every backend to it.
function _M.decide(record, now, receive, take_failed)
  if record == nil then
    return receive and "new" or "absent"
  end
  local state = record.state
  if state == "running" then
    return record.lease_until <= now and "taken" or "busy"
  elseif state == "failed" then
    return (take_failed or record.next_at <= now) and "taken" or "waiting"
  end
  return state   -- "done" or "dead"
end

-- A fresh lease's token (lua/jicoo/webhook/token.lua).
_M.token = token.new

-- The record acquire writes for a new delivery: `new` (key, event, uid, body, received_at)
-- running under a fresh lease.
function _M.running(new, now, lease)
  return {
    key = new.key, event = new.event, uid = new.uid, body = new.body,
    received_at = new.received_at,
    state = "running", attempts = 1, handlers = {}, errors = {},
    token = _M.token(), lease_until = now + lease, version = 1,
  }
end

-- A record taken over: running again under a fresh lease (changes the record in place).
function _M.take(record, now, lease)
  record.state = "running"
  record.attempts = (record.attempts or 0) + 1
  record.token = _M.token()
  record.lease_until = now + lease
  record.next_at = nil
  record.version = (record.version or 0) + 1
  return record
end

-- A failed or dead record made due now with a fresh budget (rearm), or false, why. The attempts
-- go on counting; the budget counts from here (budget_from).
function _M.rearmed(record, now)
  if record.state ~= "failed" and record.state ~= "dead" then
    return false, record.key .. " is " .. record.state .. ", not failed or dead"
  end
  record.state = "failed"
  record.next_at = now
  record.attempts = record.attempts or 0
  record.budget_from = record.attempts
  record.rearmed_at = now
  record.finished_at = nil
  record.version = (record.version or 0) + 1
  return record
end

-- Whether a record is due for the scheduler at `now`.
function _M.is_due(record, now)
  return (record.state == "running" and record.lease_until <= now)
    or (record.state == "failed" and record.next_at <= now)
end

-- Whether record matches a find filter (journal.find's fields, not limit and after).
local function matches(record, filter)
  if (filter.state and record.state ~= filter.state)
      or (filter.event and record.event ~= filter.event)
      or (filter.uid and record.uid ~= filter.uid)
      or (filter.since and record.received_at < filter.since)
      or (filter["until"] and record.received_at >= filter["until"]) then
    return false
  end
  if filter.error then
    for _, e in ipairs(record.errors or {}) do
      if string_find(tostring(e.handler), filter.error, 1, true)
          or string_find(tostring(e.message), filter.error, 1, true) then
        return true
      end
    end
    return false
  end
  return true
end
_M.matches = matches

local function earlier(a, b)
  if a.received_at ~= b.received_at then
    return a.received_at < b.received_at
  end
  return a.key < b.key
end

-- find over records a backend holds in a list: filtered, ordered, one page (see find above).
-- Each record is copied by copy(record), which leaves the body out.
function _M.page(records, filter, copy)
  local after, limit = filter.after, filter.limit
  local list = {}
  for _, record in ipairs(records) do
    if matches(record, filter) and (not after or earlier(after, record)) then
      list[#list + 1] = record
    end
  end
  table_sort(list, earlier)
  local page, next_after = {}, nil
  for i, record in ipairs(list) do
    if limit and i > limit then
      local last = page[#page]
      next_after = { received_at = last.received_at, key = last.key }
      break
    end
    page[i] = copy(record)
  end
  return page, next_after
end

-- counts over records a backend holds in a list.
function _M.count(records)
  local states, events = {}, {}
  for _, record in ipairs(records) do
    states[record.state] = (states[record.state] or 0) + 1
    local by_state = events[record.event] or {}
    by_state[record.state] = (by_state[record.state] or 0) + 1
    events[record.event] = by_state
  end
  return { states = states, events = events }
end

_M.METHODS = { "acquire", "update", "due", "get", "list", "rearm", "remove" }

function _M.is_journal(obj)
  local kind = type(obj)
  if kind ~= "table" and kind ~= "userdata" then
    return false
  end
  for _, name in ipairs(_M.METHODS) do
    if type(obj[name]) ~= "function" then
      return false
    end
  end
  return true
end

-- The constructors (not tail calls, so that a misuse error points at the caller's line).
function _M.memory(opts)
  local j = require("jicoo.webhook.journal.memory").new(opts)
  return j
end


function _M.sqlite(opts)
  local j = require("jicoo.webhook.journal.sqlite").new(opts)
  return j
end

-- The name of the embedded journal before it was SQLite: the same folder, now holding the
-- database (the file journal's records found there move in on the first open).
_M.files = _M.sqlite


function _M.redis(opts)
  local j = require("jicoo.webhook.journal.redis").new(opts)
  return j
end

return _M
