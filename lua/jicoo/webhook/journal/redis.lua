-- The Redis journal: the records in a redis-server that every nginx machine (and the command
-- line) shares. Durable as far as the server is (its AOF or RDB settings say how far).
--
-- Every key of a journal starts with its prefix (PREFIX, "jicoo-webhook:" by default):
--
--   PREFIX d:KEY       a hash per delivery: key, event, uid, body, received_at, state, attempts,
--                      next_at, lease_until, token, version, finished_at, expires_at, (once
--                      re-armed) budget_from and rearmed_at, handlers and errors as JSON text,
--                      and `indexed` (the entries below are kept for it; get and list leave the
--                      field out). A done one loses its body.
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
-- out, an error reply) is nil, err naming the server, code (the client's): never a guess.
--
-- list, find and counts are in journal/redis_reads.lua, which says how they read.
--
-- Done records expire: due(), the scheduler's call, runs a sweep at most every SWEEP_EVERY
-- seconds (at once again when the last one was full) that removes up to SWEEP_BATCH done records
-- whose expires_at has come, with their entries. EXPIRE on the hash at the ttl and a day is a
-- backstop for a journal whose due() nobody calls: the hash then goes, the sweep forgets its
-- `received` and done:EVENT entries once due() runs, and its booking's set keeps its key (find
-- skips it).
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
-- timeouts and the nginx pool's size and keepalive, or sentinels, master_name and
-- sentinel_password for a master Redis Sentinel watches, or cluster for a Redis Cluster. A
-- record that cannot be read is listed (and found) as { state = "corrupt", file = the hash's
-- name, message = why }.
--
-- Scripts name the record, due and dead keys in KEYS and build the index keys from the prefix
-- (they depend on the record's uid and event), so in a Redis Cluster (option cluster) every key
-- of a journal must be in one slot: the prefix must hold a hash tag there, and its default is
-- "{jicoo-webhook}:". One journal lives on one shard, its replicas giving the availability.
local setmetatable = setmetatable
local type = type
local error = error
local pairs = pairs
local tostring = tostring
local require = require
local math_ceil = math.ceil
local math_max = math.max
local math_huge = math.huge

local journal = require "jicoo.webhook.journal"
local redis = require "jicoo.net.redis"
local scripts = require "jicoo.webhook.journal.redis_scripts"
local hashes = require "jicoo.webhook.journal.redis_record"
local reads = require "jicoo.webhook.journal.redis_reads"
local options = require "jicoo.webhook.options"

local _M = {}

local DEFAULT_PREFIX = "jicoo-webhook:"
local CLUSTER_PREFIX = "{jicoo-webhook}:"   -- a hash tag: the journal's keys share a slot
local SWEEP_EVERY = 5       -- seconds between two sweeps of expired done records
local SWEEP_BATCH = 500     -- done records one sweep removes at most
local BACKSTOP = 86400      -- seconds a done record's hash outlives its ttl should no sweep run

local STATES, NUMBER_FIELDS = hashes.STATES, hashes.NUMBER_FIELDS
-- The fields of a new record (journal.running) the ACQUIRE script writes itself, from its other
-- arguments or as every new record starts: the new delivery sends only its own.
local WRITTEN_BY_ACQUIRE = { key = true, token = true, lease_until = true, state = true,
  attempts = true, version = true, handlers = true, errors = true }
local record_key, record_of, add_fields = hashes.hash_key, hashes.record_of, hashes.add_fields
local failure, unexpected = hashes.failure, hashes.unexpected

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
  if opts.cluster then
    if opts.prefix == nil then
      prefix = CLUSTER_PREFIX
    elseif not prefix:match("^[^{]*{[^}]+}") then
      error("journal.redis: option 'prefix': in a cluster it must hold a hash tag (as in '"
        .. CLUSTER_PREFIX .. "'), so that all of a journal's keys are in one slot", 3)
    end
  end
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

_M.FIND_READS = reads.FIND_READS   -- for the specs' count of round trips

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


-- A script's word on whether a booking has no other record (redis_scripts.lua's alone): true,
-- false, or nil when it gave none.
local function alone(flag)
  if flag == 1 then
    return true
  elseif flag == 0 then
    return false
  end
  return nil
end

-- Runs a script on one record: KEYS record, due, dead; ARGV the prefix, then args.
local function run(self, script, key, args)
  return self.client:eval_script(script, { record_key(self, key), self.due_key, self.dead_key },
    args)
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
    add_fields(args, fresh, WRITTEN_BY_ACQUIRE)
    if fresh.key ~= nil and fresh.key ~= key then   -- a record filed under another key than its own
      add_fields(args, { key = fresh.key })
    end
  end
  local reply, err, code = run(self, scripts.ACQUIRE, key, args)
  if reply == nil then
    return failure(self, err, code)
  elseif type(reply) ~= "table" or type(reply[1]) ~= "string" then
    return unexpected(self, "the journal's acquire")
  elseif reply[1] == "absent" then
    return "absent"
  elseif reply[1] == "new" then
    return "new", fresh, alone(reply[2])
  end
  local record
  record, err = record_of(reply[2], record_key(self, key))
  if not record then
    return nil, err or ("redis " .. self.address .. ": " .. key .. " vanished")
  end
  return reply[1], record, alone(reply[3])
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
  elseif type(reply) ~= "table" then
    return false   -- 0: the lease is not the token's
  end
  return reply[1] == 1, alone(reply[2])
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

-- The reads of many records (journal/redis_reads.lua).
Redis.list, Redis.find, Redis.counts = reads.list, reads.find, reads.counts

-- Whether the journal takes a write now (what health asks): a key of its own set, with a
-- minute to live (a replica, a full memory or a lost connection refuse it).
function Redis:check(now)
  local ok, err, code = self.client:call("SET", self.prefix .. "health", tostring(now or 0),
    "EX", 60)
  if not ok then
    return nil, "redis: " .. tostring(err), code
  end
  return true
end

return _M
