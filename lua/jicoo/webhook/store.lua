-- Idempotency stores: "has this delivery been claimed already?"
--
-- A store is any object with
--   store:add(key, ttl)  -> true (first to claim the key), false (already claimed),
--                           or nil, err (the store failed; the router answers 500)
--   store:delete(key)    -> true, or nil, err (releases a claim so the retry runs)
-- `add` must be atomic: of two concurrent `add`s of one key exactly one gets true.
--
-- `memory(opts)` lives here. The nginx-wide and multi-machine stores are constructors beside it
-- with the same two methods (`shdict(dict)`: ngx.shared.DICT:add/delete; `redis(opts)`:
-- SET key NX EX ttl / DEL), so routers never depend on which one they got.

local setmetatable = setmetatable
local type = type
local error = error
local tostring = tostring
local os_time = os.time
local math_floor = math.floor

local _M = {}

local DEFAULT_MAX_ENTRIES = 100000
local DEFAULT_TTL = 3 * 24 * 3600

local Memory = {}
Memory.__index = Memory

local function check_positive(value, what, level)
  if type(value) ~= "number" or value <= 0 or value ~= value then
    error(what .. " must be a positive number, got " .. tostring(value), level + 1)
  end
end

-- In-process store for one Lua state (one OpenResty worker, one CLI run).
-- Bounded: at most opts.max_entries live claims; when full, the oldest claim is evicted.
-- Claims expire after their ttl. Every operation is O(1) amortised: claims sit in a FIFO
-- queue in claim order; expired, deleted and evicted claims leave that queue from its front.
function _M.memory(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("store.memory: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local max_entries = opts.max_entries or DEFAULT_MAX_ENTRIES
  check_positive(max_entries, "store.memory: opts.max_entries", 2)
  local ttl = opts.ttl or DEFAULT_TTL
  check_positive(ttl, "store.memory: opts.ttl", 2)
  local clock = opts.clock or os_time
  if type(clock) ~= "function" then
    error("store.memory: opts.clock must be a function, got " .. type(clock), 2)
  end

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
  if type(key) ~= "string" then
    error("store:add: key must be a string, got " .. type(key), 2)
  end
  if ttl == nil then
    ttl = self.default_ttl
  else
    check_positive(ttl, "store:add: ttl", 2)
  end
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
  if type(key) ~= "string" then
    error("store:delete: key must be a string, got " .. type(key), 2)
  end
  -- The queue entry stays behind as stale; trim_front and compact drop it later.
  forget(self, key)
  return true
end

-- Claims held (expired ones count until their turn to leave the queue); for tests and monitoring.
function Memory:size()
  trim_front(self, self.clock())
  return self.count
end

-- Whether `obj` can serve as a router's store.
function _M.is_store(obj)
  local kind = type(obj)
  if kind ~= "table" and kind ~= "userdata" then
    return false
  end
  return type(obj.add) == "function" and type(obj.delete) == "function"
end

_M.DEFAULT_TTL = DEFAULT_TTL
_M.DEFAULT_MAX_ENTRIES = DEFAULT_MAX_ENTRIES

return _M
