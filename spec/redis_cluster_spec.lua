-- The Redis client (and so the Redis journal and claim store) on a Redis Cluster: the address
-- form (cluster://), the options, the hash slot, the slot map and redirects read from replies,
-- a node whose redirects never end (spec/hostile.lua), and, as the ctest integration-redis_cluster
-- (JICOO_INTEGRATION=1), a real three-master cluster on 127.0.0.1 (spec/clusters.lua): slots
-- against the cluster's own CLUSTER KEYSLOT, the journal contract (spec/journal_contract.lua),
-- the claim store, a slot moved under the journal (ASK, then MOVED, followed), the command line
-- and nginx receiving deliveries while the journal's slot moves.
local redis = require "jicoo.net.redis"
local cluster = require "jicoo.net.redis_cluster"
local journal = require "jicoo.webhook.journal"
local shared = require "journal_shared"

local NOW, LEASE, KEY = shared.NOW, shared.LEASE, shared.KEY
local new_delivery = shared.new_delivery

describe("redis.parse_url: cluster://", function()
  local URLS = {
    { "cluster://10.0.0.1:7000,10.0.0.2:7001", { cluster = {
      { host = "10.0.0.1", port = 7000 }, { host = "10.0.0.2", port = 7001 } } } },
    { "cluster://[::1]:7000/", { cluster = { { host = "::1", port = 7000 } } } },
    { "cluster://", nil, "the address lists host:port,host:port" },
    { "cluster://a:1,,b:2", nil, "the address lists host:port,host:port" },
    { "cluster://a", nil, "'a' is not host:port" },
    { "cluster://a:1/x", nil, "the address forms are host:port, sentinel://" },
  }
  for _, case in ipairs(URLS) do
    it("reads '" .. case[1] .. "'", function()
      local opts, err = redis.parse_url(case[1])
      assert.are.same(case[2], opts)
      if case[3] then
        assert.truthy(err and err:find(case[3], 1, true), tostring(err))
      end
    end)
  end
end)

describe("redis.slot", function()
  -- CRC16/XMODEM's check value (0x31C3 for "123456789") and the slots the Redis Cluster
  -- specification gives for its examples.
  local SLOTS = {
    { "123456789", 0x31C3 % 16384 }, { "foo", 12182 }, { "bar", 5061 },
    { "{user1000}.following", redis.slot("user1000") },
    { "foo{}{bar}", redis.slot("foo{}{bar}") },            -- an empty tag: the whole key
    { "foo{{bar}}zap", redis.slot("{bar") },               -- from the first '{' to the first '}'
    { "foo{bar}{zap}", redis.slot("bar") },
    { "{jicoo-webhook}:d:guest_booked/bk_1/t", redis.slot("jicoo-webhook") },
    { "", 0 },
  }
  for _, case in ipairs(SLOTS) do
    it("gives '" .. case[1] .. "' slot " .. case[2], function()
      assert.are.equal(case[2], redis.slot(case[1]))
    end)
  end
  it("hashes a tag alone", function()
    assert.are_not.equal(redis.slot("foo{}{bar}"), redis.slot("bar"))
    assert.are.equal(redis.slot("a{tag}b"), redis.slot("c{tag}d"))
  end)
end)

describe("redis cluster: what it reads from replies", function()
  it("routes a command by its key, EVAL by its first key, and keyless ones anywhere", function()
    assert.are.equal(redis.slot("k"), cluster.slot_of({ "GET", "k" }, 2))
    assert.are.equal(redis.slot("k1"), cluster.slot_of({ "evalsha", "abc", 2, "k1", "k2" }, 5))
    assert.is_nil(cluster.slot_of({ "EVAL", "return 1", 0 }, 3))
    assert.is_nil(cluster.slot_of({ "PING" }, 1))
    assert.is_nil(cluster.slot_of({ "SCRIPT", "LOAD", "return 1" }, 3))
  end)

  it("reads MOVED, ASK and TRYAGAIN, and nothing else, as redirects", function()
    assert.are.same({ "moved", "10.0.0.2", 7001 },
      { cluster.redirect({ err = "MOVED 3999 10.0.0.2:7001" }, "h") })
    assert.are.same({ "ask", "h", 7002 }, { cluster.redirect({ err = "ASK 3999 :7002" }, "h") })
    assert.are.same({ "moved", "::1", 7003 }, { cluster.redirect({ err = "MOVED 1 ::1:7003" }, "h") })
    assert.are.equal("tryagain", cluster.redirect({ err = "TRYAGAIN Multiple keys" }, "h"))
    for _, reply in ipairs({ { err = "MOVED 3999 no host!:7001" }, { err = "MOVED 3999 h:99999" },
        { err = "MOVED x h:1" }, { err = "ERR MOVED 1 h:1" }, "MOVED 1 h:1", { 1 } }) do
      assert.is_nil(cluster.redirect(reply, "h"))
    end
  end)

  it("reads a slot map, and refuses one no cluster sends, naming what is wrong", function()
    local node = function(host, port) return { host, port, "id" } end
    assert.are.same({ { 0, 99, "h", 7000 }, { 100, 16383, "10.0.0.2", 7001 } },
      cluster.ranges_of({ { 100, 16383, node("10.0.0.2", 7001) }, { 0, 99, node("", 7000) } }, "h"))
    local BAD = {
      { "SLOTS", "not a list of slot ranges" },
      { { "x" }, "entry 1 is not a slot range" },
      { { { 0, 16384, node("h", 1) } }, "entry 1 is not a slot range" },
      { { { 5, 4, node("h", 1) } }, "entry 1 is not a slot range" },
      { { { 0.5, 4, node("h", 1) } }, "entry 1 is not a slot range" },
      { { { 0, 4 } }, "entry 1 is not a slot range" },
      { { { 0, 4, node("bad host", 1) } }, "entry 1 names no host and port" },
      { { { 0, 4, node("h", 70000) } }, "entry 1 names no host and port" },
      { { { 0, 10, node("h", 1) }, { 10, 20, node("h", 2) } }, "slot 10 is in two ranges" },
    }
    for i, case in ipairs(BAD) do
      local ranges, err = cluster.ranges_of(case[1], "h")
      assert.is_nil(ranges, i)
      assert.truthy(err:find(case[2], 1, true), i .. ": " .. tostring(err))
    end
  end)
end)

local ok_socket = pcall(require, "socket")

describe("redis.new with cluster: its options", function()
  if not ok_socket then
    pending("needs LuaSocket (lua-socket)")
    return
  end
  local ONE = { { host = "127.0.0.1", port = 7000 } }
  local OPTION_ERRORS = {
    { { cluster = {} }, "option 'cluster' must be a non-empty list" },
    { { cluster = { { host = "a" } } }, "option 'cluster': entry 1 must be { host = a string" },
    { { cluster = ONE, db = 1 }, "option 'db': a Redis Cluster has database 0 only" },
    { { cluster = ONE, path = "/tmp/r.sock" }, "option 'cluster' and option 'path' name two servers" },
    { { cluster = ONE, sentinels = ONE, master_name = "m" },
      "option 'cluster' and option 'sentinels' name two servers" },
  }
  for i, case in ipairs(OPTION_ERRORS) do
    it("refuses options " .. i .. ": " .. case[2], function()
      local ok, err = pcall(redis.new, case[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
      ok, err = pcall(journal.redis, case[1])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[2], 1, true), tostring(err))
    end)
  end

  it("gives the journal a prefix with a hash tag, and refuses one without", function()
    assert.are.equal("{jicoo-webhook}:", journal.redis({ cluster = ONE }).prefix)
    assert.are.equal("{app}:j:", journal.redis({ cluster = ONE, prefix = "{app}:j:" }).prefix)
    assert.are.equal("jicoo-webhook:", journal.redis({ port = 7000 }).prefix)
    for _, prefix in ipairs({ "app:", "{}app:", "app}{" }) do
      local ok, err = pcall(journal.redis, { cluster = ONE, prefix = prefix })
      assert.is_false(ok, prefix)
      assert.truthy(tostring(err):find("option 'prefix': in a cluster it must hold a hash tag", 1,
        true), tostring(err))
    end
  end)

  it("names its seed nodes", function()
    assert.are.equal("cluster 127.0.0.1:7000", redis.new({ cluster = ONE }).address)
  end)

  it("refuses a pipeline whose keys are in two slots", function()
    local client = redis.new({ cluster = ONE })
    local ok, err = pcall(client.pipeline, client, { { "GET", "{a}1" }, { "GET", "{b}2" } })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("a pipeline's keys must share a hash slot (command 2", 1,
      true), tostring(err))
  end)
end)

local ok_servers, servers = pcall(require, "servers")
if not (ok_socket and ok_servers and servers.redis_server and servers.redis_cli) then
  describe("redis client on a cluster, against servers", function()
    pending("needs LuaSocket (lua-socket) and redis-server")
  end)
  return
end

describe("redis client on a cluster: a node whose redirects never end", function()
  local dir, hostile

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
  end)

  teardown(function()
    hostile:stop()
    servers.remove_dir(dir)
  end)

  for _, case in ipairs({ { "moved-self", "MOVED 3999", "moved" }, { "ask-self", "ASK 3999", "ask" },
      { "try-again", "TRYAGAIN", "tryagain" } }) do
    it("gives up on " .. case[1] .. " after 8 sends, with the last redirect as the reply", function()
      local client = redis.new({ cluster = { { host = "127.0.0.1", port = hostile.port } } })
      local reply, err, code = client:call("GET", case[1])
      assert.is_nil(reply)
      assert.truthy(err:find(case[2], 1, true), err)
      assert.are.equal("reply", code)
      assert.are.equal(8, client.cluster.redirects[case[3]])
      local sent = 0
      for _, event in ipairs(hostile:events()) do
        if event == "command GET " .. case[1] then
          sent = sent + 1
        end
      end
      assert.are.equal(8, sent)
    end)
  end

  it("fails naming every node when none gives a slot map", function()
    local down = servers.free_port()
    local client = redis.new({ cluster = { { host = "127.0.0.1", port = down } } })
    local reply, err, code = client:call("GET", "k")
    assert.is_nil(reply)
    assert.truthy(err:find("redis cluster: no node gave the slot map (redis 127.0.0.1:" .. down,
      1, true), err)
    assert.are.equal("refused", code)
  end)
end)

if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("redis client on a cluster: a real one", function()
    pending("runs as the ctest integration-redis_cluster (JICOO_INTEGRATION=1)")
  end)
  return
end

local clusters = require "clusters"
local support = require "support"
local cjson = require "cjson"

local set, set_dir
setup(function()
  set_dir = servers.temp_dir()
  local why
  set, why = clusters.start(set_dir)
  assert(set, why)
end)

teardown(function()
  if set then
    set:stop()
  end
  servers.remove_dir(set_dir)
end)

describe("redis client on a real cluster", function()
  it("gives every key the slot the cluster gives it", function()
    local keys = { "foo", "{jicoo-webhook}:due", "a{b}c", "{}x", "{{x}}", "jicoo-webhook:claim:k" }
    for i = 1, 40 do
      keys[#keys + 1] = string.format("guest_booked/bk_%d/2024-03-0%dT10:00:00Z{%d}", i, i % 9, i % 7)
    end
    for _, key in ipairs(keys) do
      assert.are.equal(tostring(redis.slot(key)),
        set.nodes[1]:cli("CLUSTER KEYSLOT " .. support.quote(key)), key)
    end
  end)

  it("spreads single-key commands over the three nodes, and pipelines within a slot", function()
    local client = redis.new({ cluster = set:list() })
    for i = 1, 30 do
      assert.are.equal("OK", client:call("SET", "spread" .. i, i))
    end
    assert.are.equal("17", client:call("GET", "spread17"))
    for _, node in ipairs(set.nodes) do
      assert.truthy(tonumber(node:cli("DBSIZE")) > 0, node.port)
    end
    assert.are.same({ "OK", "v" }, client:pipeline({ { "SET", "{p}1", "v" }, { "GET", "{p}1" } }))
    assert.are.same({ moved = 0, ask = 0, tryagain = 0 }, client.cluster.redirects)
  end)
end)

require("journal_contract")({ name = "redis on a cluster", durable = true, keeps_done = true,
  make = function()
    set:flush()
    return journal.redis({ cluster = set:list() })
  end })

describe("the Redis journal and claim store on a real cluster", function()
  before_each(function()
    set:flush()
  end)

  it("keeps all of a journal's keys on one node, in its prefix's slot", function()
    local j = journal.redis({ cluster = set:list(), prefix = "{jobs}:" })
    for i = 1, 5 do
      local key = "guest_booked/bk_" .. i .. "/t"
      local _, record = j:acquire(key, NOW, LEASE, new_delivery(key), false)
      assert.is_true(j:update(key, record.token, { state = i % 2 == 0 and "done" or "failed",
        finished_at = NOW, next_at = NOW + 60, error = "e" }, NOW))
    end
    local owner = set:owner(redis.slot("{jobs}"))
    local total = 0
    for _, node in ipairs(set.nodes) do
      total = total + tonumber(node:cli("DBSIZE"))
    end
    assert.truthy(total > 5)
    assert.are.equal(tostring(total), owner:cli("CLUSTER COUNTKEYSINSLOT " .. redis.slot("{jobs}")))
    assert.are.equal(5, #j:find({}))
  end)

  it("claims keys spread over the nodes", function()
    local claims = require("jicoo.webhook.store").redis({ cluster = set:list() })
    for i = 1, 20 do
      assert.is_true(claims:add("claim" .. i, 60))
      assert.is_false(claims:add("claim" .. i, 60))
    end
    assert.is_true(claims:delete("claim3"))
    assert.is_true(claims:add("claim3", 60))
    local holding = 0
    for _, node in ipairs(set.nodes) do
      holding = holding + (tonumber(node:cli("DBSIZE")) > 0 and 1 or 0)
    end
    assert.are.equal(3, holding)
  end)

  it("follows the journal's slot as it moves to another node: ASK while it moves, then MOVED", function()
    local j = journal.redis({ cluster = set:list() })
    local slot = redis.slot("{jicoo-webhook}")
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    local from = set:owner(slot)
    local to = set.nodes[1] == from and set.nodes[2] or set.nodes[1]
    local redirects = j.client.cluster.redirects
    set:migrate(slot, from, to, function()
      -- the slot is moving, its keys still on the source: served there
      assert.are.equal("running", j:get(KEY).state)
      assert.are.equal(0, redirects.ask)
    end, function()
      -- every key on the target, the slot still the source's: a read is sent on with ASK; a
      -- script one of whose keys is absent (here `dead`) gets TRYAGAIN until the slot is the
      -- target's, and fails without a guess after 8 sends
      assert.are.equal("0", from:cli("CLUSTER COUNTKEYSINSLOT " .. slot))
      assert.are.equal("running", j:get(KEY).state)
      assert.truthy(redirects.ask >= 1, redirects.ask)
      local ok, err = j:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW)
      assert.is_nil(ok)
      assert.truthy(tostring(err):find("TRYAGAIN", 1, true), tostring(err))
      assert.truthy(redirects.tryagain >= 1, redirects.tryagain)
      assert.are.equal(0, redirects.moved)
    end)
    assert.is_true(j:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW))
    -- the slot is the target's: MOVED once, and then the map sends everything there
    assert.are.equal("done", j:get(KEY).state)
    assert.are.equal(1, redirects.moved)
    assert.are.equal("new", (j:acquire("k2", NOW, LEASE, new_delivery("k2"), false)))
    assert.are.equal("done", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    assert.are.equal(1, redirects.moved)
    assert.are.equal("0", from:cli("CLUSTER COUNTKEYSINSLOT " .. slot))
    assert.truthy(tonumber(to:cli("CLUSTER COUNTKEYSINSLOT " .. slot)) > 3)
    -- a new client learns the new map from the start
    local fresh = journal.redis({ cluster = set:list() })
    assert.are.equal("done", fresh:get(KEY).state)
    assert.are.same({ moved = 0, ask = 0, tryagain = 0 }, fresh.client.cluster.redirects)
  end)

  it("is what jicoo-webhook deliveries --redis cluster://... reads", function()
    local j = journal.redis({ cluster = set:list() })
    j:acquire("k3", NOW, LEASE, new_delivery("k3"), false)
    local _, url = set:list()
    local code, out, err = require("cli_runner").run("deliveries list --state running --redis "
      .. support.quote(url), "JICOO_JOURNAL_DIR= JICOO_REDIS_PASSWORD= JICOO_REDIS_SENTINEL_PASSWORD=")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("running k3", 1, true), out)
  end)
end)

describe("nginx on a cluster (JICOO_REDIS=cluster://...): deliveries while the journal's slot moves", function()
  local SECRET = "whsec_cluster_spec"
  local TEMPLATE = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json")
    :gsub("%s+$", "")
  local state = {}

  setup(function()
    set:flush()
    state.dir = servers.temp_dir()
    state.output = state.dir .. "/out"
    assert(support.run("mkdir -p " .. support.quote(state.output)))
    local _, url = set:list()
    local log
    state.nginx, log = servers.nginx_server(state.dir, "nginx", function(port)
      return servers.config(port, { workers = 2 })
    end, {
      JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_OUTPUT_DIR = state.output,
      JICOO_HANDLERS = servers.spec_dir .. "/nginx_handlers",
      JICOO_REDIS = url,
    })
    assert(state.nginx, "nginx did not start:\n" .. tostring(log))
  end)

  teardown(function()
    if state.nginx then
      state.nginx:stop()
    end
    servers.remove_dir(state.dir)
  end)

  local function post(uid, expected)
    local path = state.dir .. "/" .. uid .. ".json"
    support.write(path, (TEMPLATE:gsub('"uid":"bk_7Hq2"', '"uid":"' .. uid .. '"')))
    local status, body = servers.post(state.nginx:url(), path,
      { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, os.time(), path) })
    if status ~= (expected or "200") then
      print(table.concat(state.nginx:error_lines(), "\n"))
    end
    assert.are.equal(expected or "200", status, body)
    local answer = cjson.decode(body)
    return answer.result or answer.error
  end

  it("handles each delivery once: before, while the slot moves (500, sent again), after", function()
    local uids = {}
    local function batch(name, n)
      for i = 1, n do
        local uid = name .. i
        uids[#uids + 1] = uid
        assert.are.equal("handled", post(uid), uid)
      end
    end
    batch("before", 8)
    local slot = redis.slot("{jicoo-webhook}")
    local from = set:owner(slot)
    local to = set.nodes[3] == from and set.nodes[2] or set.nodes[3]
    -- While the slot moves, a script one of whose keys is absent (a new record; `dead` while
    -- there are no dead letters) gets TRYAGAIN: 500, and Jicoo sends the delivery again.
    set:migrate(slot, from, to, function()
      for i = 1, 2 do   -- the keys still on the source
        assert.are.equal("store_failed", post("migrating" .. i, "500"))
      end
    end, function()
      for i = 1, 2 do   -- every key on the target, the slot still the source's
        assert.are.equal("store_failed", post("moving" .. i, "500"))
      end
    end)
    batch("migrating", 2)   -- the retries, once the slot is the target's (MOVED)
    batch("moving", 2)
    batch("after", 6)
    assert.are.equal("duplicate", post("before1"))
    assert.are.equal("duplicate", post("moving2"))
    local counts = servers.counts(state.output .. "/handled.log")
    local handled = 0
    for key, n in pairs(counts) do
      assert.are.equal(1, n, key)
      handled = handled + 1
    end
    assert.are.equal(#uids, handled)
    assert.are.equal("0", from:cli("CLUSTER COUNTKEYSINSLOT " .. slot))
    local unexpected = {}
    for _, line in ipairs(state.nginx:error_lines()) do
      if not line:find("TRYAGAIN", 1, true) then
        unexpected[#unexpected + 1] = line
      end
    end
    assert.are.same({}, unexpected)
  end)
end)
