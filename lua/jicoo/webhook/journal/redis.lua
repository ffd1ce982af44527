-- The Redis journal: the records in a redis-server that every nginx machine (and the command
-- line) shares. Durable as far as the server is (its AOF or RDB settings say how far).
--
--   PREFIX d:KEY   a hash per delivery: key, event, uid, body, received_at, state, attempts,
--                  next_at, lease_until, token, version, finished_at, expires_at, and handlers
--                  and errors as JSON text. A done one loses its body and expires after the ttl.
--   PREFIX due     a sorted set of the keys the scheduler must look at: a running one scored by
--                  lease_until, a failed one by next_at
--   PREFIX dead    a sorted set of the dead letters, scored by finished_at
--
-- Hashes and sorted sets rather than a stream: a delivery is found again by its key (copies are
-- told from new ones), each handler's success is written into its record, and a retry is due at
-- a time of its own; a stream is an append-only log read in order and has none of the three.
--
-- acquire, update, rearm and remove each run one script (EVALSHA, one round trip), so that a
-- record and both sets change together, atomically, whoever else is at them. The scripts get
-- every input as an argument (a token included, made here) and read no clock. Any failure of
-- Redis (refused, timed out, an error reply) is nil, err naming the server: never a guess.
--
-- Options: prefix ("jicoo-webhook:"), ttl (the seconds a done record is kept, store.DEFAULT_TTL),
-- and the client's (lua/jicoo/webhook/redis.lua): host, port, path, password, username, db, the
-- timeouts and the nginx pool's size and keepalive. A record that cannot be read is listed as
-- { state = "corrupt", file = the hash's name, error = why }.
--
-- Scripts name the record, due and dead keys in KEYS, but they sit in different hash slots: a
-- Redis Cluster cannot serve this journal, one server (with replicas) can.
local setmetatable = setmetatable
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local next = next
local require = require
local string_gsub = string.gsub
local table_sort = table.sort
local math_ceil = math.ceil
local math_min = math.min

local json = require "jicoo.webhook.json"
local journal = require "jicoo.webhook.journal"
local redis = require "jicoo.webhook.redis"
local store = require "jicoo.webhook.store"

local _M = {}

local DEFAULT_PREFIX = "jicoo-webhook:"
local FETCH_BATCH = 100     -- records fetched per round trip when listing
local SCAN_COUNT = 1000

local NUMBER_FIELDS = {
  received_at = true, attempts = true, next_at = true, lease_until = true, version = true,
  finished_at = true, expires_at = true,
}
local JSON_FIELDS = { handlers = true, errors = true }
local STATES = {}
for _, state in ipairs(journal.STATES) do
  STATES[state] = true
end

-- KEYS: record, due, dead. ARGV: key, now, lease_until, take_failed ("1" or "0"), a fresh
-- token, then the fields and values of the record of a new delivery (none: no new delivery).
-- journal.decide, said in Redis.
local ACQUIRE = [[
local record, due, dead, key = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = tonumber(ARGV[2])
local state = redis.call('HGET', record, 'state')
local outcome
if not state then
  if #ARGV < 6 then
    -- a key the sets still name, its record gone (deleted by hand, evicted): forget it
    redis.call('ZREM', due, key)
    redis.call('ZREM', dead, key)
    return { 'absent' }
  end
  redis.call('HSET', record, unpack(ARGV, 6))
  redis.call('ZADD', due, ARGV[3], key)
  return { 'new', redis.call('HGETALL', record) }
elseif state == 'running' or state == 'failed' then
  local field = state == 'running' and 'lease_until' or 'next_at'
  local at = tonumber(redis.call('HGET', record, field))
  if not at then
    return redis.error_reply('corrupt record ' .. record .. ': ' .. field .. ' is not a number')
  end
  if state == 'running' then
    outcome = at <= now and 'taken' or 'busy'
  else
    outcome = (ARGV[4] == '1' or at <= now) and 'taken' or 'waiting'
  end
else
  outcome = state
end
if outcome == 'taken' then
  redis.call('HSET', record, 'state', 'running', 'token', ARGV[5], 'lease_until', ARGV[3])
  redis.call('HINCRBY', record, 'attempts', 1)
  redis.call('HINCRBY', record, 'version', 1)
  redis.call('HDEL', record, 'next_at')
  redis.call('ZADD', due, ARGV[3], key)
end
return { outcome, redis.call('HGETALL', record) }
]]

-- KEYS: record, due, dead. ARGV: key, token, now, ttl, then the changed fields and values.
local UPDATE = [[
local record, due, dead, key, now = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3]
local current = redis.call('HMGET', record, 'state', 'token')
if current[1] ~= 'running' or current[2] ~= ARGV[2] then
  return 0
end
if #ARGV > 4 then
  redis.call('HSET', record, unpack(ARGV, 5))
end
redis.call('HINCRBY', record, 'version', 1)
local fields = redis.call('HMGET', record, 'state', 'lease_until', 'next_at', 'finished_at')
local state = fields[1]
if state == 'running' then
  redis.call('ZADD', due, fields[2] or now, key)
elseif state == 'failed' then
  redis.call('ZADD', due, fields[3] or now, key)
elseif state == 'done' then
  redis.call('ZREM', due, key)
  redis.call('ZREM', dead, key)
  redis.call('HDEL', record, 'body')
  redis.call('EXPIRE', record, ARGV[4])
elseif state == 'dead' then
  redis.call('ZREM', due, key)
  redis.call('ZADD', dead, fields[4] or now, key)
end
return 1
]]

-- KEYS: record, due, dead. ARGV: key, now.
local REARM = [[
local record, due, dead, key, now = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local state = redis.call('HGET', record, 'state')
if not state then
  return { 'absent' }
elseif state ~= 'failed' and state ~= 'dead' then
  return { 'refused', state }
end
redis.call('HSET', record, 'state', 'failed', 'next_at', now, 'attempts', 0)
redis.call('HDEL', record, 'finished_at')
redis.call('HINCRBY', record, 'version', 1)
redis.call('ZREM', dead, key)
redis.call('ZADD', due, now, key)
return { 'rearmed', redis.call('HGETALL', record) }
]]

-- KEYS: record, due, dead. ARGV: key.
local REMOVE = [[
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return removed
]]

local Redis = {}
Redis.__index = Redis
Redis.__name = "jicoo.webhook.journal.redis"   -- store.is_ours: it returns, never raises, on failure

local OWN_OPTIONS = { prefix = true, ttl = true }

function _M.new(opts)
  local client_opts = redis.client_options(opts, OWN_OPTIONS, "journal.redis", 3)
  opts = opts or {}
  local prefix, ttl = opts.prefix or DEFAULT_PREFIX, opts.ttl or store.DEFAULT_TTL
  if type(prefix) ~= "string" then
    error("journal.redis: opts.prefix must be a string, got " .. type(prefix), 3)
  end
  if type(ttl) ~= "number" or ttl <= 0 or ttl ~= ttl then
    error("journal.redis: opts.ttl must be a positive number of seconds", 3)
  end
  local client = redis.new(client_opts)
  return setmetatable({
    client = client,
    address = client.address,
    prefix = prefix,
    due_key = prefix .. "due",
    dead_key = prefix .. "dead",
    ttl = math_ceil(ttl),
    durable = true,
  }, Redis)
end

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

-- The record an HGETALL reply holds: the record, false when it is empty, or nil, err.
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
    else
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
  local args = { key, now, lease_until, take_failed and "1" or "0",
    fresh and fresh.token or journal.token() }
  if fresh then
    add_fields(args, fresh)
  end
  local reply, err, code = run(self, ACQUIRE, key, args)
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" or type(reply[1]) ~= "string" then
    return nil, "redis " .. self.address .. ": unexpected reply to the journal's acquire"
  elseif reply[1] == "absent" then
    return "absent"
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
  local args = { key, token, now, self.ttl }
  add_fields(args, changes)
  if changes.state == "done" and changes.expires_at == nil then
    args[#args + 1] = "expires_at"
    args[#args + 1] = now + self.ttl
  end
  local reply, err, code = run(self, UPDATE, key, args)
  if reply == nil then
    return failure(self, err, code)
  end
  return reply == 1
end

function Redis:due(now, limit)
  check_number(now, "now", "due")
  check_number(limit, "limit", "due")
  local keys, err, code = self.client:call("ZRANGEBYSCORE", self.due_key, "-inf", now,
    "LIMIT", 0, limit)
  if keys == nil then
    return failure(self, err, code)
  elseif type(keys) ~= "table" then
    return nil, "redis " .. self.address .. ": unexpected reply to ZRANGEBYSCORE"
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

-- The names of the record hashes a list must read, or nil, err.
local function record_names(self, state)
  local names = {}
  if state == "running" or state == "failed" or state == "dead" then
    local members, err, code = self.client:call("ZRANGE",
      state == "dead" and self.dead_key or self.due_key, 0, -1)
    if members == nil then
      return failure(self, err, code)
    end
    for i, member in ipairs(members) do
      names[i] = record_key(self, member)
    end
    return names
  end
  -- done ones sit in no set: every record is walked
  local pattern = string_gsub(self.prefix, "[%*%?%[%]\\]", "\\%0") .. "d:*"
  local cursor, seen = "0", {}
  repeat
    local reply, err, code = self.client:call("SCAN", cursor, "MATCH", pattern, "COUNT",
      SCAN_COUNT)
    if reply == nil then
      return failure(self, err, code)
    elseif type(reply) ~= "table" or type(reply[2]) ~= "table" then
      return nil, "redis " .. self.address .. ": unexpected reply to SCAN"
    end
    cursor = reply[1]
    for _, name in ipairs(reply[2]) do
      if not seen[name] then   -- SCAN may name a key twice
        seen[name] = true
        names[#names + 1] = name
      end
    end
  until cursor == "0"
  return names
end

function Redis:list(state)
  if state ~= "all" and not STATES[state] then
    error("journal:list: state must be one of running, failed, done, dead, all", 2)
  end
  local names, err = record_names(self, state)
  if not names then
    return nil, err
  end
  local list = {}
  for first = 1, #names, FETCH_BATCH do
    local commands = {}
    for i = first, math_min(first + FETCH_BATCH - 1, #names) do
      commands[#commands + 1] = { "HGETALL", names[i] }
    end
    local replies, code
    replies, err, code = self.client:pipeline(commands)
    if not replies then
      return failure(self, err, code)
    end
    for i, flat in ipairs(replies) do
      local name = names[first + i - 1]
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

function Redis:rearm(key, now)
  check_key(key, "rearm")
  check_number(now, "now", "rearm")
  local reply, err, code = run(self, REARM, key, { key, now })
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" then
    return nil, "redis " .. self.address .. ": unexpected reply to the journal's rearm"
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
  local reply, err, code = run(self, REMOVE, key, { key })
  if reply == nil then
    return failure(self, err, code)
  elseif reply == 0 then
    return nil, "not found"
  end
  return true
end

return _M
