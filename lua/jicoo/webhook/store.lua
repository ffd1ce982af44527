-- Idempotency stores: "has this delivery been claimed already?"
--
-- A store is any object with
--   store:add(key, ttl)  -> true (first to claim the key), false (already claimed),
--                           or nil, err (the store failed; the router answers 500)
--   store:delete(key)    -> true, or nil, err (releases a claim so the retry runs)
-- `add` must be atomic: of two concurrent `add`s of one key exactly one gets true.
--
-- Three constructors with those two methods, so routers never depend on which one they got:
-- `memory(opts)` (one Lua state), `shdict(dict)` (every worker of one nginx: ngx.shared.DICT's
-- add/delete) and `redis(opts)` (several nginx machines: SET key 1 NX EX ttl / DEL through
-- OpenResty's cosocket Redis client). The last two need OpenResty and only load its modules
-- when called, so this file stays usable from plain Lua.

local setmetatable = setmetatable
local type = type
local error = error
local tostring = tostring
local os_time = os.time
local math_floor = math.floor
local math_ceil = math.ceil
local pcall = pcall
local require = require
local rawget = rawget
local pairs = pairs
local ipairs = ipairs
local string_format = string.format

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

-- The ttl a claim of `key` gets (the store's default when none is given); every store's add
-- raises here on a key that is not a string or a ttl that is not a positive number.
local function claim_ttl(self, key, ttl)
  if type(key) ~= "string" then
    error("store:add: key must be a string, got " .. type(key), 3)
  end
  if ttl == nil then
    return self.default_ttl
  end
  check_positive(ttl, "store:add: ttl", 3)
  return ttl
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
  ttl = claim_ttl(self, key, ttl)
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

---------------------------------------------------------------------------------------------
-- ngx.shared.DICT: one nginx, every worker. `add` is atomic across workers (the dict's lock),
-- and survives `nginx -s reload` (not a restart). A full dict evicts its least recently used
-- claims to make room, as memory() evicts its oldest.

local Shdict = {}
Shdict.__index = Shdict

local function ngx_shared()
  local ngx = rawget(_G, "ngx")
  return ngx and ngx.shared
end

function _M.shdict(dict, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("store.shdict: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local name = dict
  if type(dict) == "string" then
    local shared = ngx_shared()
    if not shared then
      error("store.shdict: ngx.shared is not available (run this inside OpenResty)", 2)
    end
    dict = shared[name]
    if dict == nil then
      error("store.shdict: no lua_shared_dict named '" .. name .. "' in nginx.conf", 2)
    end
  else
    name = "(dict)"
  end
  local kind = type(dict)
  if (kind ~= "table" and kind ~= "userdata") or dict.add == nil or dict.delete == nil then
    error("store.shdict: dict must be an ngx.shared.DICT or its name, got " .. kind, 2)
  end
  local ttl = opts.ttl or DEFAULT_TTL
  check_positive(ttl, "store.shdict: opts.ttl", 2)
  return setmetatable({
    dict = dict,
    name = name,
    prefix = opts.prefix or "",
    default_ttl = ttl,
  }, Shdict)
end

function Shdict:add(key, ttl)
  ttl = claim_ttl(self, key, ttl)
  local ok, err = self.dict:add(self.prefix .. key, true, ttl)
  if ok then
    return true
  end
  if err == "exists" then
    return false
  end
  return nil, "shdict " .. self.name .. ": " .. tostring(err)
end

function Shdict:delete(key)
  if type(key) ~= "string" then
    error("store:delete: key must be a string, got " .. type(key), 2)
  end
  self.dict:delete(self.prefix .. key)
  return true
end

---------------------------------------------------------------------------------------------
-- Redis: several nginx machines share one redis-server. One `SET key token NX EX ttl` claims;
-- any failure is `nil, err` (the router answers 500 and the sender retries), never a guess.
-- Connections come from the cosocket pool (set_keepalive) and are closed, not pooled, after
-- an error, since a timed-out connection may still carry the late reply.

local Redis = {}
Redis.__index = Redis

local REDIS_OPTIONS = {
  host = "string", port = "number", path = "string", username = "string",
  password = "string", db = "number", prefix = "string", ttl = "number",
  connect_timeout = "number", send_timeout = "number", read_timeout = "number",
  pool = "string", pool_size = "number", backlog = "number", keepalive_timeout = "number",
  client = "table",
}

-- Deletes KEYS[1] only if it still holds our token: undoes a claim whose reply was lost
-- without touching one that another request made meanwhile.
local RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then"
  .. " return redis.call('del', KEYS[1]) end return 0"

-- OpenResty's Redis client: `resty.redis` as OpenResty ships it, `nginx.redis` as Debian's
-- lua-nginx-redis does.
local function redis_client()
  for _, name in ipairs({ "resty.redis", "nginx.redis" }) do
    local ok, client = pcall(require, name)
    if ok and type(client) == "table" and client.new then
      return client
    end
  end
  return nil
end

function _M.redis(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("store.redis: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  for name, value in pairs(opts) do
    local expected = REDIS_OPTIONS[name]
    if not expected then
      error("store.redis: unknown option '" .. tostring(name) .. "'", 2)
    end
    if type(value) ~= expected then
      error("store.redis: opts." .. name .. " must be a " .. expected .. ", got " .. type(value), 2)
    end
  end
  for _, name in ipairs({ "port", "ttl", "connect_timeout", "send_timeout", "read_timeout",
      "pool_size", "backlog", "keepalive_timeout" }) do
    if opts[name] ~= nil then
      check_positive(opts[name], "store.redis: opts." .. name, 2)
    end
  end
  if opts.db ~= nil and (opts.db < 0 or opts.db ~= math_floor(opts.db)) then
    error("store.redis: opts.db must be a database number (0, 1, ...)", 2)
  end
  if opts.username ~= nil and opts.password == nil then
    error("store.redis: opts.username needs opts.password", 2)
  end
  local client = opts.client or redis_client()
  if not client then
    error("store.redis: needs OpenResty's Redis client (resty.redis; on Debian the package"
      .. " lua-nginx-redis)", 2)
  end

  local host, port = opts.host or "127.0.0.1", opts.port or 6379
  local address = opts.path and ("unix:" .. opts.path) or (host .. ":" .. port)
  local db = opts.db or 0
  local pool_size = opts.pool_size or 32
  return setmetatable({
    client = client,
    host = host,
    port = port,
    path = opts.path and ("unix:" .. opts.path),
    address = address,
    username = opts.username,
    password = opts.password,
    db = db,
    prefix = opts.prefix or "jicoo-webhook:claim:",
    default_ttl = opts.ttl or DEFAULT_TTL,
    connect_timeout = opts.connect_timeout or 1000,
    send_timeout = opts.send_timeout or 1000,
    read_timeout = opts.read_timeout or 1000,
    keepalive_timeout = opts.keepalive_timeout or 60000,
    pool_size = pool_size,
    -- Connections differ by database and user once SELECT and AUTH ran on them, so each
    -- combination gets its own pool.
    connect_opts = {
      pool = opts.pool or string_format("jicoo-webhook:%s:%d:%s", address, db, opts.username or ""),
      pool_size = pool_size,
      backlog = opts.backlog,
    },
    claims = 0,   -- numbers this store's tokens
  }, Redis)
end

local function set_timeouts(self, red)
  if red.set_timeouts then
    return red:set_timeouts(self.connect_timeout, self.send_timeout, self.read_timeout)
  end
  -- lua-resty-redis before 0.28 has only set_timeout(one value for all three); the cosocket
  -- underneath takes them apart.
  local sock = rawget(red, "_sock")
  if sock and sock.settimeouts then
    return sock:settimeouts(self.connect_timeout, self.send_timeout, self.read_timeout)
  end
  return red:set_timeout(self.read_timeout)
end

-- A connected client, authenticated and on its database; or nil, err.
local function connect(self)
  local red, err = self.client:new()
  if not red then
    return nil, "redis " .. self.address .. ": " .. tostring(err)
  end
  set_timeouts(self, red)
  local ok
  if self.path then
    ok, err = red:connect(self.path, self.connect_opts)
  else
    ok, err = red:connect(self.host, self.port, self.connect_opts)
  end
  if not ok then
    return nil, "redis " .. self.address .. ": cannot connect: " .. tostring(err)
  end
  -- A pooled connection already ran AUTH and SELECT.
  if (red:get_reused_times() or 0) == 0 then
    local res
    if self.password then
      if self.username then
        res, err = red:auth(self.username, self.password)
      else
        res, err = red:auth(self.password)
      end
      if not res then
        red:close()
        return nil, "redis " .. self.address .. ": AUTH failed: " .. tostring(err)
      end
    end
    if self.db ~= 0 then
      res, err = red:select(self.db)
      if not res then
        red:close()
        return nil, "redis " .. self.address .. ": SELECT " .. self.db .. " failed: " .. tostring(err)
      end
    end
  end
  return red
end

local function keepalive(self, red)
  local ok = red:set_keepalive(self.keepalive_timeout, self.pool_size)
  if not ok then
    red:close()
  end
end

local function new_token(self)
  self.claims = self.claims + 1
  local ngx = rawget(_G, "ngx")
  local pid = ngx and ngx.worker and ngx.worker.pid and ngx.worker.pid() or 0
  local now = ngx and ngx.now and ngx.now() or os_time()
  return string_format("%d:%d:%.3f", pid, self.claims, now)
end

function Redis:add(key, ttl)
  ttl = claim_ttl(self, key, ttl)
  local red, err = connect(self)
  if not red then
    return nil, err
  end
  local full_key, token = self.prefix .. key, new_token(self)
  local res
  res, err = red:set(full_key, token, "NX", "EX", math_ceil(ttl))
  if res == "OK" then
    keepalive(self, red)
    return true
  end
  if res ~= nil and res ~= false and type(res) ~= "string" then
    keepalive(self, red)   -- the null reply: the key exists
    return false
  end
  red:close()
  -- The SET may have landed with its reply lost (a read timeout): take our claim back, if it
  -- is ours, so the sender's retry is not mistaken for a duplicate.
  local undo = connect(self)
  if undo then
    local undone = undo:eval(RELEASE_IF_OURS, 1, full_key, token)
    if undone ~= nil and undone ~= false then
      keepalive(self, undo)
    else
      undo:close()
    end
  end
  return nil, "redis " .. self.address .. ": SET NX failed: " .. tostring(err or res)
end

function Redis:delete(key)
  if type(key) ~= "string" then
    error("store:delete: key must be a string, got " .. type(key), 2)
  end
  local red, err = connect(self)
  if not red then
    return nil, err
  end
  local res
  res, err = red:del(self.prefix .. key)
  if res == nil or res == false then
    red:close()
    return nil, "redis " .. self.address .. ": DEL failed: " .. tostring(err)
  end
  keepalive(self, red)
  return true
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
