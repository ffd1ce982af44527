-- The Redis journal's server-side scripts (journal/redis.lua runs them, and says what the keys
-- hold). Each runs atomically, so that a record, the sets of the scheduler and the indexes of
-- find and counts change together whoever else is at them. A script gets every input as an
-- argument (a token, the time, the journal's prefix) and reads no clock.
--
-- Every script that changes a record takes the prefix as ARGV[1] and builds the index keys from
-- it (a booking's set, an event's set of done records): their names are known only once the
-- record is read. Every key starts with the prefix, so a hash tag in it keeps one journal on one
-- Redis Cluster slot. Scripts compare keys byte by byte where they must (`before`): Lua's `<`
-- follows the server's LC_COLLATE, which Redis sets from its environment.
--
-- What a delivery costs redis-server, beyond its two round trips, is mostly the commands its
-- two scripts run (18: the record, the scheduler's set, the indexes and counters), and a
-- redis.call costs about half again what its command does. A script's arguments cost by their
-- count, so a new record's constant fields are written here rather than sent; a constant number
-- handed to a command is text ('1'), as Redis formats a Lua number with snprintf.
local _M = {}

-- What every script that moves a record between states shares: the index helpers.
local INDEXES = [=[
local prefix = ARGV[1]

-- Every record is in `received`, and in its booking's set, both scored by received_at.
local function add(key, uid, received_at)
  redis.call('ZADD', prefix .. 'received', received_at, key)
  if uid and uid ~= '' then
    redis.call('ZADD', prefix .. 'u:' .. uid, received_at, key)
  end
end

-- 1 when the booking's set holds no key but (perhaps) the record's own, else 0.
local function alone(uid)
  if not uid or uid == '' then
    return 1
  end
  return redis.call('ZCARD', prefix .. 'u:' .. uid) <= 1 and 1 or 0
end

local function drop(key, uid)
  redis.call('ZREM', prefix .. 'received', key)
  if uid and uid ~= '' then
    redis.call('ZREM', prefix .. 'u:' .. uid, key)
  end
end

-- A running, failed or dead record is in its state's set (by received_at) and counted under
-- its state and event; a done one is in its event's set of done records (by expires_at), whose
-- size is its count, so that a done record Redis drops itself leaves no count behind.
local function enter(key, event, received_at, state, expires_at)
  if state == 'done' then
    redis.call('ZADD', prefix .. 'done:' .. event, expires_at, key)
    redis.call('SADD', prefix .. 'events', event)
  else
    redis.call('ZADD', prefix .. 's:' .. state, received_at, key)
    redis.call('HINCRBY', prefix .. 'counts', state .. ':' .. event, '1')
  end
end

local function leave(key, event, state)
  if state == 'done' then
    redis.call('ZREM', prefix .. 'done:' .. event, key)
  else
    redis.call('ZREM', prefix .. 's:' .. state, key)
    redis.call('HINCRBY', prefix .. 'counts', state .. ':' .. event, '-1')
  end
end

-- A record written before the indexes (no `indexed` field) joins them as it is now, in `state`,
-- the first time a script changes it. Its event and received_at, as the indexes hold them.
local function adopt(record, key, state)
  local f = redis.call('HMGET', record, 'event', 'uid', 'received_at')
  local event, received_at = f[1] or '', f[3] or 0
  add(key, f[2], received_at)
  enter(key, event, received_at, state)
  redis.call('HSET', record, 'indexed', '1')
  return event, received_at
end
]=]

-- KEYS: record, due, dead. ARGV: prefix, key, now, lease_until, take_failed ("1" or "0"), a
-- fresh token, then the new delivery's own fields and values (none: no new delivery): its event,
-- uid, body and received_at, as it has them. The rest of a new record is what every new record
-- starts with (journal.running): the key, the token and the lease above, running, attempt 1,
-- version 1, no handler done and no error; the script writes those itself, so that they cross
-- the network and the script's arguments once. journal.decide, said in Redis.
_M.ACQUIRE = INDEXES .. [=[
local record, due, dead, key = KEYS[1], KEYS[2], KEYS[3], ARGV[2]
local now, lease_until = tonumber(ARGV[3]), ARGV[4]
local current = redis.call('HMGET', record, 'state', 'lease_until', 'next_at', 'indexed', 'uid')
local state = current[1]
if not state then
  if #ARGV < 7 then
    -- a key the sets still name, its record gone (deleted by hand, evicted): forget it
    redis.call('ZREM', due, key)
    redis.call('ZREM', dead, key)
    redis.call('ZREM', prefix .. 'received', key)
    for _, s in ipairs({ 'running', 'failed', 'dead' }) do
      redis.call('ZREM', prefix .. 's:' .. s, key)
    end
    return { 'absent' }
  end
  local event, uid, received_at = '', nil, ARGV[3]   -- what the indexes need (no table made)
  for i = 7, #ARGV - 1, 2 do
    local name = ARGV[i]
    if name == 'event' then
      event = ARGV[i + 1]
    elseif name == 'uid' then
      uid = ARGV[i + 1]
    elseif name == 'received_at' and tonumber(ARGV[i + 1]) then
      received_at = ARGV[i + 1]
    end
  end
  redis.call('HSET', record, 'indexed', '1', 'key', key, 'token', ARGV[6], 'lease_until',
    lease_until, 'state', 'running', 'attempts', '1', 'version', '1', 'handlers', '{}',
    'errors', '[]', unpack(ARGV, 7))
  redis.call('ZADD', due, lease_until, key)
  add(key, uid, received_at)
  enter(key, event, received_at, 'running')
  return { 'new', alone(uid) }   -- the caller has the record it wrote
end
local outcome
if state == 'running' or state == 'failed' then
  local field = state == 'running' and 'lease_until' or 'next_at'
  local at = tonumber(current[state == 'running' and 2 or 3])
  if not at then
    return redis.error_reply('corrupt record ' .. record .. ': ' .. field .. ' is not a number')
  end
  if state == 'running' then
    outcome = at <= now and 'taken' or 'busy'
  else
    outcome = (ARGV[5] == '1' or at <= now) and 'taken' or 'waiting'
  end
else
  outcome = state
end
if outcome == 'taken' then
  local event, received_at
  if not current[4] then
    event, received_at = adopt(record, key, state)
  elseif state == 'failed' then
    local f = redis.call('HMGET', record, 'event', 'received_at')
    event, received_at = f[1] or '', f[2] or 0
  end
  if state == 'failed' then
    leave(key, event, 'failed')
    enter(key, event, received_at, 'running')
  end
  redis.call('HSET', record, 'state', 'running', 'token', ARGV[6], 'lease_until', lease_until)
  redis.call('HINCRBY', record, 'attempts', '1')
  redis.call('HINCRBY', record, 'version', '1')
  redis.call('HDEL', record, 'next_at')
  redis.call('ZADD', due, lease_until, key)
  return { outcome, redis.call('HGETALL', record), alone(current[5]) }
end
return { outcome, redis.call('HGETALL', record) }
]=]

-- KEYS: record, due, dead. ARGV: prefix, key, token, now, the seconds a done record's hash
-- lives at most (its ttl and a day: the backstop, should no sweep remove it), then the changed
-- fields and values.
_M.UPDATE = INDEXES .. [=[
local record, due, dead, key, now = KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[4]
local current = redis.call('HMGET', record, 'state', 'token', 'version', 'event', 'received_at',
  'indexed', 'lease_until', 'next_at', 'finished_at', 'expires_at', 'uid')
if current[1] ~= 'running' or current[2] ~= ARGV[3] then
  return 0
end
-- the fields the sets go by, as the changes leave them (read here rather than again after HSET)
local f = { state = 'running', lease_until = current[7], next_at = current[8],
  finished_at = current[9], expires_at = current[10] }
for i = 6, #ARGV - 1, 2 do
  f[ARGV[i]] = ARGV[i + 1]
end
redis.call('HSET', record, 'version', (tonumber(current[3]) or 0) + 1, unpack(ARGV, 6))
local event, received_at = current[4] or '', current[5] or 0
if not current[6] then
  event, received_at = adopt(record, key, 'running')
end
local state = f.state
if state ~= 'running' then
  leave(key, event, 'running')
  enter(key, event, received_at, state, f.expires_at or now)
end
if state == 'running' then
  redis.call('ZADD', due, f.lease_until or now, key)
elseif state == 'failed' then
  redis.call('ZADD', due, f.next_at or now, key)
elseif state == 'done' then
  redis.call('ZREM', due, key)   -- (a running record is in no dead set)
  redis.call('HDEL', record, 'body')
  redis.call('EXPIRE', record, ARGV[5])
elseif state == 'dead' then
  redis.call('ZREM', due, key)
  redis.call('ZADD', dead, f.finished_at or now, key)
end
if state == 'running' then
  return { 1 }   -- still running: no look at the booking's set
end
return { 1, alone(current[11]) }
]=]

-- KEYS: record, due, dead. ARGV: prefix, key, now.
_M.REARM = INDEXES .. [=[
local record, due, dead, key, now = KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3]
local current = redis.call('HMGET', record, 'state', 'event', 'received_at', 'indexed',
  'attempts')
local state = current[1]
if not state then
  return { 'absent' }
elseif state ~= 'failed' and state ~= 'dead' then
  return { 'refused', state }
end
local event, received_at = current[2] or '', current[3] or 0
if not current[4] then
  event, received_at = adopt(record, key, state)
end
if state ~= 'failed' then
  leave(key, event, state)
  enter(key, event, received_at, 'failed')
end
-- the attempts go on counting; the retry budget counts from them (journal/init.lua)
redis.call('HSET', record, 'state', 'failed', 'next_at', now, 'budget_from', current[5] or 0,
  'rearmed_at', now)
redis.call('HDEL', record, 'finished_at')
redis.call('HINCRBY', record, 'version', '1')
redis.call('ZREM', dead, key)
redis.call('ZADD', due, now, key)
return { 'rearmed', redis.call('HGETALL', record) }
]=]

-- KEYS: record, due, dead. ARGV: prefix, key. A record from before the indexes is in none.
_M.REMOVE = INDEXES .. [=[
local record, key = KEYS[1], ARGV[2]
local current = redis.call('HMGET', record, 'state', 'event', 'uid', 'indexed')
local removed = redis.call('DEL', record)
redis.call('ZREM', KEYS[2], key)
redis.call('ZREM', KEYS[3], key)
if current[1] and current[4] then
  leave(key, current[2] or '', current[1])
  drop(key, current[3])
end
return removed
]=]

-- KEYS: events. ARGV: prefix, now, the most records to remove. Removes the done records whose
-- expires_at has come, and their index entries; how many it looked at. A record Redis dropped
-- already (the EXPIRE backstop, an eviction) leaves its booking's set holding its key: its uid
-- went with it (find skips the key). A key whose record lives again (a new delivery under it
-- since Redis dropped the done one, or a done one of another event) keeps its entries.
_M.SWEEP = INDEXES .. [=[
local now, batch = ARGV[2], tonumber(ARGV[3])
local swept = 0
for _, event in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local set = prefix .. 'done:' .. event
  local keys = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, batch - swept)
  for _, key in ipairs(keys) do
    local record = prefix .. 'd:' .. key
    local f = redis.call('HMGET', record, 'state', 'event', 'uid')
    if not f[1] then
      redis.call('ZREM', prefix .. 'received', key)
    elseif f[1] == 'done' and (f[2] or '') == event then
      redis.call('DEL', record)
      drop(key, f[3])
    end
    redis.call('ZREM', set, key)
  end
  swept = swept + #keys
  if redis.call('EXISTS', set) == 0 then
    redis.call('SREM', KEYS[1], event)
  end
  if swept >= batch then
    break
  end
end
return swept
]=]

-- KEYS: counts, events. ARGV: prefix. The counters of running, failed and dead records (state:
-- event, n), the events with done records, and the number of done records of each.
_M.COUNTS = [=[
local prefix = ARGV[1]
local events = redis.call('SMEMBERS', KEYS[2])
local done = {}
for i, event in ipairs(events) do
  done[i] = redis.call('ZCARD', prefix .. 'done:' .. event)
end
return { redis.call('HGETALL', KEYS[1]), events, done }
]=]

-- KEYS: an index (a sorted set of keys scored by received_at). ARGV: prefix, since and until
-- ('' for none; until excluded), the cursor's received_at and key ('' for none: from the
-- start), the most matches to return, the most index entries to read, then the filter's names
-- (state, event, uid, error) and values. Reads the index in order from the cursor and returns
-- { { member, score, the record's fields and values but the body }, ... } for the records that
-- match, 1 when the index has nothing more in range (else 0), and the score and member of the
-- last entry read, from which the next call goes on.
_M.FIND = [=[
local index, prefix = KEYS[1], ARGV[1]
local since, till = ARGV[2], tonumber(ARGV[3])
local after_at, after_key = ARGV[4], ARGV[5]
local want, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local filter = {}
for i = 8, #ARGV - 1, 2 do
  filter[ARGV[i]] = ARGV[i + 1]
end
local FIELDS = { 'key', 'event', 'uid', 'state', 'received_at', 'attempts', 'handlers', 'errors',
  'next_at', 'lease_until', 'token', 'finished_at', 'expires_at', 'version', 'budget_from',
  'rearmed_at' }

-- Whether a comes before b, byte by byte (as Redis orders members of equal score).
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

-- Text that JSON writes as it is (no control, quote, backslash, slash or byte over 127) can be
-- looked for in the JSON first: most records are passed without being decoded.
local plain = filter.error and not string.find(filter.error, '[%c"\\/\128-\255]')

local function has_error(errors_text, text)
  if not errors_text or errors_text == '[]'
      or (plain and not string.find(errors_text, text, 1, true)) then
    return false
  end
  local ok, errors = pcall(cjson.decode, errors_text)
  if not ok or type(errors) ~= 'table' then
    return false
  end
  for _, e in ipairs(errors) do
    if type(e) == 'table' and (string.find(tostring(e.handler), text, 1, true)
        or string.find(tostring(e.message), text, 1, true)) then
      return true
    end
  end
  return false
end

-- v: the record's FIELDS (false where absent; no key: the hash is gone).
local function matches(v)
  return v[1] and (not filter.state or v[4] == filter.state)
    and (not filter.event or v[2] == filter.event) and (not filter.uid or v[3] == filter.uid)
    and (not filter.error or has_error(v[8], filter.error))
end

-- Where to start: after the cursor's entry when it is still there; else at the first entry
-- scored at least as late, skipping those of its score up to its key (an earlier page's).
local rank, skip_to = 0, nil
if since ~= '' then
  rank = redis.call('ZCOUNT', index, '-inf', '(' .. since)
end
if after_key ~= '' and (since == '' or tonumber(after_at) >= tonumber(since)) then
  local score = redis.call('ZSCORE', index, after_key)
  if score and tonumber(score) == tonumber(after_at) then
    rank = redis.call('ZRANK', index, after_key) + 1
  else
    rank = redis.call('ZCOUNT', index, '-inf', '(' .. after_at)
    skip_to = after_key
  end
end

local found, read, exhausted = {}, 0, false
local last_at, last_key = '', ''
while #found < want and read < budget and not exhausted do
  local entries = redis.call('ZRANGE', index, rank, rank + 99, 'WITHSCORES')
  exhausted = #entries == 0
  for i = 1, #entries, 2 do
    local member, score = entries[i], entries[i + 1]
    rank = rank + 1
    if till and tonumber(score) >= till then
      exhausted = true
      break
    end
    if skip_to and tonumber(score) == tonumber(after_at) and not before(skip_to, member) then
      -- on an earlier page (not counted: each is passed once)
    else
      skip_to = nil
      read = read + 1
      last_at, last_key = score, member
      local values = redis.call('HMGET', prefix .. 'd:' .. member, unpack(FIELDS))
      if matches(values) then
        local flat = {}
        for j, name in ipairs(FIELDS) do
          if values[j] then
            flat[#flat + 1] = name
            flat[#flat + 1] = values[j]
          end
        end
        found[#found + 1] = { member, score, flat }
      end
      if #found >= want or read >= budget then
        break
      end
    end
  end
end
return { found, exhausted and 1 or 0, last_at, last_key }
]=]

return _M
