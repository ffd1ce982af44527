-- The in-process claim store, for one Lua state (one OpenResty worker, one CLI run): the
-- memory journal's default. Bounded: at most opts.max_entries live claims; when full, the oldest
-- claim is evicted. Claims expire after their ttl. Every operation is O(1) amortised: claims sit
-- in a FIFO queue in claim order; expired, deleted and evicted claims leave that queue from its
-- front.
local setmetatable = setmetatable
local os_time = os.time
local math_floor = math.floor

local options = require "jicoo.webhook.options"
local store = require "jicoo.webhook.journal.claims"

local _M = {}

local Memory = {}
Memory.__index = Memory
Memory.__name = "jicoo.webhook.journal.claims.memory"   -- store.is_ours: it returns, never raises, on failure

local OPTIONS = options.schema("store.memory", {
  { "max_entries", "number", default = store.DEFAULT_MAX_ENTRIES, check = options.positive,
    what = "a positive number" },
  { "ttl", "number", default = store.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
  { "now", "callable", default = os_time, what = "a function (the clock, Unix seconds)" },
  { "clock", "callable", what = "a function (now's former name)" },
})

function _M.new(opts)
  local o = OPTIONS:check(opts, 3)
  local max_entries, ttl, clock = o.max_entries, o.ttl, o.clock or o.now
  return setmetatable({
    max_entries = math_floor(max_entries),
    default_ttl = ttl,
    clock = clock,
    expires_at = {},   -- key -> time the claim lapses
    claim_seq = {},    -- key -> position of its live entry in the queue
    queue = {},        -- position -> key, oldest claim at `head`
    head = 1,
    tail = 0,
    count = 0,         -- live claims (keys in expires_at)
  }, Memory)
end

local function forget(self, key)
  if self.expires_at[key] ~= nil then
    self.expires_at[key] = nil
    self.claim_seq[key] = nil
    self.count = self.count - 1
  end
end

-- Drops queue entries at the front that no longer stand for a live claim (deleted or
-- re-claimed keys), and live claims at the front that have expired.
local function trim_front(self, now)
  local queue, claim_seq, expires_at = self.queue, self.claim_seq, self.expires_at
  while self.head <= self.tail do
    local position = self.head
    local key = queue[position]
    if claim_seq[key] == position then
      if expires_at[key] > now then
        return
      end
      forget(self, key)
    end
    queue[position] = nil
    self.head = position + 1
  end
end

-- Rebuilds the queue from live claims when stale entries (from delete) outnumber them, so
-- the queue stays within twice the live count whatever the pattern of add and delete.
local function compact(self)
  local queue, claim_seq = self.queue, self.claim_seq
  local fresh, n = {}, 0
  for position = self.head, self.tail do
    local key = queue[position]
    if key ~= nil and claim_seq[key] == position then
      n = n + 1
      fresh[n] = key
      claim_seq[key] = n
    end
  end
  self.queue, self.head, self.tail = fresh, 1, n
end

local function evict_oldest(self)
  local queue, claim_seq = self.queue, self.claim_seq
  while self.head <= self.tail do
    local position = self.head
    local key = queue[position]
    queue[position] = nil
    self.head = position + 1
    if claim_seq[key] == position then
      forget(self, key)
      return
    end
  end
end

function Memory:add(key, ttl)
  ttl = store.claim_ttl(self, key, ttl)
  local now = self.clock()
  trim_front(self, now)

  local expires = self.expires_at[key]
  if expires ~= nil then
    if expires > now then
      return false
    end
    forget(self, key)
  end

  if self.count >= self.max_entries then
    evict_oldest(self)
  end
  if self.tail - self.head + 1 > 2 * self.max_entries then
    compact(self)
  end

  local position = self.tail + 1
  self.tail = position
  self.queue[position] = key
  self.claim_seq[key] = position
  self.expires_at[key] = now + ttl
  self.count = self.count + 1
  return true
end

function Memory:delete(key)
  store.check_key(key)
  -- The queue entry stays behind as stale; trim_front and compact drop it later.
  forget(self, key)
  return true
end

-- Claims held (expired ones count until their turn to leave the queue); for tests and monitoring.
function Memory:size()
  trim_front(self, self.clock())
  return self.count
end

return _M
