-- The claim store of several nginx machines behind a load balancer: one redis-server. A claim is
-- `SET <prefix><key> <token> NX EX <ttl>`, through the project's own Redis client
-- (lua/jicoo/webhook/redis.lua: cosockets under nginx, LuaSocket elsewhere). Redis down
-- (refused, timed out, an error reply) is nil, err, never a guess. When a SET's reply is lost
-- after it was sent, the claim may have landed: the store takes it back if it still holds its
-- token (a compare-and-delete), so that the sender's retry is not mistaken for a duplicate.
local setmetatable = setmetatable
local tostring = tostring
local math_ceil = math.ceil

local redis = require "jicoo.net.redis"
local options = require "jicoo.webhook.options"
local store = require "jicoo.webhook.journal.claims"
local token = require "jicoo.webhook.journal.token"

local _M = {}

local DEFAULT_PREFIX = "jicoo-webhook:claim:"

-- Deletes KEYS[1] only if it still holds our token: undoes a claim whose reply was lost without
-- touching one that another request made meanwhile.
local RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then"
  .. " return redis.call('del', KEYS[1]) end return 0"

local Redis = {}
Redis.__index = Redis
Redis.__name = "jicoo.webhook.journal.claims.redis"   -- store.is_ours: it returns, never raises, on failure

-- opts: prefix ("jicoo-webhook:claim:"), ttl (the default claim's, 3 days), and the client's:
-- host, port, path, password, username, db, connect_timeout, send_timeout, read_timeout,
-- pool_size, keepalive_timeout.
local OPTIONS = options.schema("store.redis", {
  { "prefix", "string", default = DEFAULT_PREFIX },
  { "ttl", "number", default = store.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
})

function _M.new(opts)
  local o = OPTIONS:check(opts, 3, redis.option_names())
  local client = redis.new(redis.client_options(opts, OPTIONS:name_set(), "store.redis", 3))
  return setmetatable({
    client = client,
    address = client.address,
    prefix = o.prefix,
    default_ttl = o.ttl,
  }, Redis)
end

local function failure(self, what, err, code)
  if code == "reply" then
    return nil, "redis " .. self.address .. ": " .. what .. " failed: " .. tostring(err)
  end
  return nil, tostring(err)
end

function Redis:add(key, ttl)
  ttl = store.claim_ttl(self, key, ttl)
  local full_key, mine = self.prefix .. key, token.new()
  local res, err, code = self.client:call("SET", full_key, mine, "NX", "EX", math_ceil(ttl))
  if res == "OK" then
    return true
  elseif res == redis.null then
    return false   -- the key exists: claimed already
  elseif res ~= nil then
    return nil, "redis " .. self.address .. ": SET NX answered " .. tostring(res)
  end
  if code ~= "reply" then   -- the SET may have been done before the connection failed
    self.client:eval_script(RELEASE_IF_OURS, { full_key }, { mine })
  end
  return failure(self, "SET NX", err, code)
end

function Redis:delete(key)
  store.check_key(key)
  local res, err, code = self.client:call("DEL", self.prefix .. key)
  if res == nil then
    return failure(self, "DEL", err, code)
  end
  return true
end

return _M
