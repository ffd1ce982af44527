-- The in-process idempotency store: first claim wins, expiry, release, bounded memory.
local store = require "jicoo.webhook.store"

-- A store on a clock the test moves by hand.
local function clocked_store(opts)
  local clock = { now = 0 }
  opts = opts or {}
  opts.clock = function()
    return clock.now
  end
  return store.memory(opts), clock
end

-- Each step: { "add", key, ttl, expected }, { "delete", key }, { "at", seconds } (sets the
-- clock) or { "size", expected }.
local scenarios = {
  {
    name = "the first add of a key wins, later ones are refused",
    steps = { { "add", "a", nil, true }, { "add", "a", nil, false }, { "add", "b", nil, true },
      { "add", "a", nil, false }, { "size", 2 } },
  },
  {
    name = "a claim lapses after its ttl (expiry is at exactly now + ttl)",
    steps = { { "add", "a", 10, true }, { "at", 9 }, { "add", "a", 10, false },
      { "at", 10 }, { "add", "a", 10, true }, { "at", 19 }, { "add", "a", 10, false } },
  },
  {
    name = "without a ttl the store's default applies",
    opts = { ttl = 5 },
    steps = { { "add", "a", nil, true }, { "at", 4 }, { "add", "a", nil, false },
      { "at", 5 }, { "add", "a", nil, true } },
  },
  {
    name = "delete releases a claim so the next add wins",
    steps = { { "add", "a", nil, true }, { "delete", "a" }, { "add", "a", nil, true },
      { "add", "a", nil, false }, { "delete", "never-added" }, { "size", 1 } },
  },
  {
    name = "a short claim behind a long one still lapses on time",
    steps = { { "add", "long", 100, true }, { "add", "short", 1, true }, { "at", 5 },
      { "add", "short", 1, true }, { "add", "long", 100, false } },
  },
  {
    name = "expired claims leave the store",
    steps = { { "add", "a", 10, true }, { "add", "b", 10, true }, { "size", 2 }, { "at", 11 },
      { "size", 0 } },
  },
  {
    name = "when full, the oldest claim is evicted",
    opts = { max_entries = 3 },
    steps = { { "add", "a", nil, true }, { "add", "b", nil, true }, { "add", "c", nil, true },
      { "add", "d", nil, true }, { "size", 3 }, { "add", "b", nil, false },
      { "add", "a", nil, true },   -- a was evicted; claiming it again evicts b
      { "add", "b", nil, true }, { "add", "d", nil, false }, { "size", 3 } },
  },
  {
    name = "deleted claims do not count towards the bound",
    opts = { max_entries = 2 },
    steps = { { "add", "a", nil, true }, { "delete", "a" }, { "add", "b", nil, true },
      { "add", "c", nil, true }, { "add", "b", nil, false }, { "add", "c", nil, false } },
  },
}

describe("store.memory", function()
  for _, scenario in ipairs(scenarios) do
    it(scenario.name, function()
      local s, clock = clocked_store(scenario.opts)
      for i, step in ipairs(scenario.steps) do
        local op = step[1]
        if op == "add" then
          assert.are.equal(step[4], s:add(step[2], step[3]), "step " .. i .. ": add " .. step[2])
        elseif op == "delete" then
          assert.is_true(s:delete(step[2]))
        elseif op == "at" then
          clock.now = step[2]
        elseif op == "size" then
          assert.are.equal(step[2], s:size(), "step " .. i .. ": size")
        end
      end
    end)
  end

  it("keeps its queue bounded under a long run of claims and releases", function()
    local s = clocked_store({ max_entries = 4 })
    assert.is_true(s:add("held-all-along", 1000))
    for i = 1, 5000 do
      assert.is_true(s:add("k" .. i))
      assert.is_true(s:delete("k" .. i))
    end
    assert.is_true(s.tail - s.head + 1 <= 2 * 4 + 1)
    assert.are.equal(1, s:size())
    assert.is_false(s:add("held-all-along"))
  end)

  it("keeps at most max_entries claims however many keys arrive", function()
    local s = clocked_store({ max_entries = 100 })
    for i = 1, 10000 do
      assert.is_true(s:add("k" .. i))
    end
    assert.are.equal(100, s:size())
    assert.is_false(s:add("k10000"))
    assert.is_true(s:add("k9900"))   -- evicted long ago
  end)

  local misuse = {
    { "a non-table opts", function() store.memory("big") end, "opts must be a table" },
    { "max_entries 0", function() store.memory({ max_entries = 0 }) end, "max_entries" },
    { "a negative ttl", function() store.memory({ ttl = -1 }) end, "ttl" },
    { "a clock that is not a function", function() store.memory({ clock = 5 }) end, "clock" },
    { "a non-string key to add", function() store.memory():add(42) end, "key must be a string" },
    { "a zero ttl to add", function() store.memory():add("a", 0) end, "ttl" },
    { "a non-string key to delete", function() store.memory():delete({}) end, "key must be a string" },
  }
  for _, case in ipairs(misuse) do
    it("raises on " .. case[1], function()
      assert.has_error(case[2])
      local ok, err = pcall(case[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
    end)
  end
end)

describe("store.is_store", function()
  local cases = {
    { "a memory store", store.memory(), true },
    { "a table with add and delete", { add = function() end, delete = function() end }, true },
    { "a table without delete", { add = function() end }, false },
    { "a string", "store", false },
    { "nil", nil, false },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. " -> " .. tostring(case[3]), function()
      assert.are.equal(case[3], store.is_store(case[2]))
    end)
  end
end)

-- store.redis against a real redis-server on 127.0.0.1 (through LuaSocket outside nginx).
describe("store.redis", function()
  local has_socket = pcall(require, "socket")
  local ok_servers, servers = pcall(require, "servers")
  if not (has_socket and ok_servers and servers.redis_server and servers.redis_cli) then
    pending("needs LuaSocket (lua-socket) and redis-server")
    return
  end
  local dir, redis

  setup(function()
    dir = servers.temp_dir()
    redis = assert(servers.redis(dir))
  end)

  teardown(function()
    redis:stop()
    servers.remove_dir(dir)
  end)

  it("claims a key once, for its ttl, and gives it back on delete", function()
    local s = store.redis({ port = redis.port, prefix = "t1:" })
    assert.is_true(s:add("k", 60))
    assert.is_false(s:add("k", 60))
    local ttl = tonumber(redis:cli("TTL t1:k"))
    assert.truthy(ttl > 55 and ttl <= 60, tostring(ttl))
    assert.is_true(s:delete("k"))
    assert.is_true(s:add("k"))
    ttl = tonumber(redis:cli("TTL t1:k"))
    assert.truthy(ttl > store.DEFAULT_TTL - 60, tostring(ttl))   -- the default ttl
  end)

  it("answers nil, err naming the server when Redis is down, and works again after", function()
    local s = store.redis({ port = redis.port, prefix = "t2:", connect_timeout = 200 })
    redis:stop()
    local claimed, err = s:add("k")
    assert.is_nil(claimed)
    assert.truthy(err:find("127.0.0.1:" .. redis.port, 1, true), err)
    local deleted, delete_err = s:delete("k")
    assert.is_nil(deleted)
    assert.is_string(delete_err)
    assert.is_true(redis:start())
    assert.is_true(s:add("k"))
  end)

  it("answers an error reply (a Redis out of memory) with nil, err naming it", function()
    local s = store.redis({ port = redis.port, prefix = "t3:" })
    redis:cli("CONFIG SET maxmemory-policy noeviction")
    redis:cli("CONFIG SET maxmemory 1")
    local claimed, err = s:add("k")
    redis:cli("CONFIG SET maxmemory 0")
    assert.is_nil(claimed)
    assert.truthy(err:find("redis 127.0.0.1:" .. redis.port .. ": SET NX failed: OOM", 1, true), err)
    assert.is_true(s:add("k"))
  end)

  it("raises on misuse", function()
    assert.has_error(function() store.redis({ nope = 1 }) end)
    assert.has_error(function() store.redis({ port = "6379" }) end)
    assert.has_error(function() store.redis({ ttl = 0 }) end)
    assert.has_error(function() store.redis({ prefix = 1 }) end)
    local s = store.redis({ port = redis.port })
    assert.has_error(function() s:add(1) end)
    assert.has_error(function() s:delete(nil) end)
  end)
end)
