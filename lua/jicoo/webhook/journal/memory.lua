-- The memory journal: records in this Lua state, for tests and plain-Lua scripts. Not durable:
-- what it holds is gone with the process, so the router leaves the retry of a failed delivery
-- to its sender too (a copy takes it at once) and answers a copy of one still running with a
-- retryable 503.
--
-- Which deliveries were received is asked of a claim store (store.memory() unless opts.claims
-- names another, e.g. store.shdict(...) to share it between nginx workers). The records of
-- running, failed and dead deliveries stay here; a done one leaves only its claim, for the
-- claim's ttl. A failed or dead delivery's claim is given back, so that the sender's retry is
-- taken wherever it arrives: a worker that takes it back must claim it again first.
local setmetatable = setmetatable
local pairs = pairs
local next = next
local ipairs = ipairs
local tostring = tostring

local journal = require "jicoo.webhook.journal"
local options = require "jicoo.webhook.options"
local store = require "jicoo.webhook.journal.claims"

local _M = {}

local DEFAULT_MAX_OPEN = 100000
local Memory = {}
Memory.__index = Memory
Memory.__name = "jicoo.webhook.journal.memory"   -- store.is_ours: it returns, never raises, on failure

local OPTIONS = options.schema("journal.memory", {
  { "claims", "any", check = store.is_store,
    what = "a claim store with add(key, ttl) and delete(key)" },
  { "ttl", "number", default = journal.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
  { "max_entries", "number", default = DEFAULT_MAX_OPEN, check = options.positive,
    what = "a positive number" },
})

function _M.new(opts)
  local o = OPTIONS:check(opts, 3)
  local claims = o.claims or store.memory({ ttl = o.ttl, max_entries = o.max_entries })
  if not store.is_ours(claims) then
    claims = store.guarded(claims, { "add", "delete" })
  end
  return setmetatable({
    claims = claims,
    ttl = o.ttl,
    max_open = o.max_entries,
    records = {},   -- key -> the record of a running, failed or dead delivery
    by_uid = {},    -- booking uid -> { key = true }: its records
    open = 0,
    durable = false,
  }, Memory)
end

-- Claims key in the store: true, false (claimed already), or nil, err.
local function claim(self, key)
  local claimed, err = self.claims:add(key, self.ttl)
  if claimed == nil then
    return nil, tostring(err or "store:add returned nil")
  end
  return claimed
end

local function release(self, key)
  local released, err = self.claims:delete(key)
  if released == nil then
    return nil, "cannot release the claim on " .. key .. " (a retry arriving elsewhere is taken"
      .. " for a duplicate until the claim expires): " .. tostring(err or "store:delete returned nil")
  end
  return true
end

-- A record is changed in place only by its lease's holder (update); a new lease gets a new table
-- (take_over), so that whoever keeps an older one (the router keeps the record it acquired, for
-- its token) does not see a later attempt's changes, as with any other backend. What get and
-- list hand out are copies.
local function copy(record)
  if record == nil then
    return nil
  end
  local c = {}
  for name, value in pairs(record) do
    c[name] = value
  end
  local handlers, errors = {}, {}
  for label in pairs(record.handlers or {}) do
    handlers[label] = true
  end
  for i, e in ipairs(record.errors or {}) do
    errors[i] = { handler = e.handler, message = e.message }
  end
  c.handlers, c.errors = handlers, errors
  return c
end

local function forget(self, key)
  local record = self.records[key]
  if record then
    self.records[key] = nil
    self.open = self.open - 1
    local keys = self.by_uid[record.uid]
    if keys then
      keys[key] = nil
      if next(keys) == nil then
        self.by_uid[record.uid] = nil
      end
    end
  end
end

-- Whether the journal holds no record of record's booking but (perhaps) record itself.
local function alone(self, record)
  if record.uid == nil then
    return true   -- nothing to order it by
  end
  local keys = self.by_uid[record.uid]
  if keys == nil then
    return true
  end
  local first = next(keys)
  local second = next(keys, first)
  return second == nil and (first == nil or first == record.key)
end

function Memory:acquire(key, now, lease, new, take_failed)
  local record = self.records[key]
  local outcome = journal.decide(record, now, new ~= nil, take_failed)
  if outcome == "new" then
    if self.open >= self.max_open then
      return nil, "memory journal full: " .. self.open .. " deliveries not done", "full"
    end
    local claimed, err = claim(self, key)
    if claimed == nil then
      return nil, err
    elseif not claimed then
      return "done", { key = key, state = "done" }
    end
    record = journal.running(new, now, lease)
    self.records[key] = record
    self.open = self.open + 1
    if record.uid ~= nil then
      local keys = self.by_uid[record.uid] or {}
      keys[key] = true
      self.by_uid[record.uid] = keys
    end
    return "new", record, alone(self, record)
  elseif outcome == "taken" then
    if record.state == "failed" then
      -- its claim was given back: whoever claims it again runs it
      local claimed, err = claim(self, key)
      if claimed == nil then
        return nil, err
      elseif not claimed then
        forget(self, key)
        return "done", { key = key, state = "done" }
      end
    end
    record = journal.take(copy(record), now, lease)
    self.records[key] = record
    return "taken", record, alone(self, record)
  end
  return outcome, copy(record)
end

function Memory:update(key, token, changes)
  local record = self.records[key]
  if not record or record.state ~= "running" or record.token ~= token then
    return false
  end
  -- The fields update may change (journal/init.lua), one by one: a loop of a few turns here
  -- would stop every trace through the router's dispatch inside nginx (spec/jit_trace.lua).
  if changes.state ~= nil then record.state = changes.state end
  if changes.handlers ~= nil then record.handlers = changes.handlers end
  if changes.errors ~= nil then record.errors = changes.errors end
  if changes.next_at ~= nil then record.next_at = changes.next_at end
  if changes.lease_until ~= nil then record.lease_until = changes.lease_until end
  if changes.finished_at ~= nil then record.finished_at = changes.finished_at end
  if changes.attempts ~= nil then record.attempts = changes.attempts end
  if changes.expires_at ~= nil then record.expires_at = changes.expires_at end
  record.version = record.version + 1
  if record.state == "done" then
    forget(self, key)   -- its claim stays, for the ttl
  elseif record.state == "failed" or record.state == "dead" then
    local ok, err = release(self, key)
    if not ok then
      return ok, err
    end
  end
  if record.state == "running" then
    return true
  end
  return true, alone(self, record)
end

function Memory:due(now, limit)
  local keys = {}
  for key, record in pairs(self.records) do
    if #keys >= limit then
      break
    end
    if journal.is_due(record, now) then
      keys[#keys + 1] = key
    end
  end
  return keys
end

function Memory:get(key)
  return copy(self.records[key])
end

function Memory:list(state)
  local list = {}
  for _, record in pairs(self.records) do
    if state == "all" or record.state == state then
      list[#list + 1] = copy(record)
    end
  end
  return list
end

local function summary(record)
  local c = copy(record)
  c.body = nil
  return c
end

local function open_records(self)
  local list = {}
  for _, record in pairs(self.records) do
    list[#list + 1] = record
  end
  return list
end

-- Done deliveries leave only their claims here: find and counts see the others.
function Memory:find(filter)
  filter = filter or {}
  local records
  if filter.uid ~= nil then
    -- a booking's records, from its index (what the router's order asks of every delivery)
    local keys = self.by_uid[filter.uid]
    if keys == nil then
      return {}
    end
    local only = next(keys)
    if next(keys, only) == nil and not (filter.state or filter.event or filter.since
      or filter["until"] or filter.error or filter.after) then
      return { summary(self.records[only]) }   -- the booking's one record: nothing to sort
    end
    records = {}
    for key in pairs(keys) do
      records[#records + 1] = self.records[key]
    end
  else
    records = open_records(self)
  end
  return journal.page(records, filter, summary)
end

function Memory:counts()
  return journal.count(open_records(self))
end

-- Nothing on disk to fail: it takes writes while the process runs.
function Memory.check()
  return true
end

function Memory:rearm(key, now)
  local record = self.records[key]
  if not record then
    return nil, "not found"
  end
  local rearmed, why = journal.rearmed(record, now)
  if not rearmed then
    return false, why
  end
  return copy(rearmed)
end

function Memory:remove(key)
  if not self.records[key] then
    return nil, "not found"
  end
  forget(self, key)
  return release(self, key)
end

return _M
