-- The Redis client (and so the Redis journal) following a master that Redis Sentinel watches:
-- the address forms (redis.parse_url), the options, sentinels that answer what no sentinel
-- sends (spec/hostile.lua), a server named as the master that is a replica, and a real set on
-- 127.0.0.1 (a master, a replica, three sentinels: spec/sentinels.lua) whose master is killed
-- with kill -9 (in the ctest integration-redis_sentinel). The servers' part is pending without
-- LuaSocket or redis-server.
local redis = require "jicoo.net.redis"
local journal = require "jicoo.webhook.journal"
local shared = require "journal_shared"
local support = require "support"

local NOW, LEASE, KEY = shared.NOW, shared.LEASE, shared.KEY
local new_delivery = shared.new_delivery

local URLS = {
  { "127.0.0.1:6380", { host = "127.0.0.1", port = 6380 } },
  { "redis.internal", { host = "redis.internal", port = 6379 } },
  { "[::1]:6381", { host = "::1", port = 6381 } },
  { "sentinel://10.0.0.1:26379,10.0.0.2:26380/jobs", { master_name = "jobs",
    sentinels = { { host = "10.0.0.1", port = 26379 }, { host = "10.0.0.2", port = 26380 } } } },
  { "sentinel://[::1]:26379/m", { master_name = "m", sentinels = { { host = "::1", port = 26379 } } } },
  { "", nil, "a Redis address must be" },
  { "host:99999", nil, "port 99999 is out of range" },
  { "redis://host:6379", nil, "the address forms are" },
  { "::1", nil, "is not host:port" },
  { "sentinel://10.0.0.1:26379/", nil, "ends with /MASTER-NAME" },
  { "sentinel://10.0.0.1:26379", nil, "the address forms are" },
  { "sentinel://10.0.0.1/m", nil, "'10.0.0.1' is not host:port" },
  { "sentinel://a:1,,b:2/m", nil, "lists host:port,host:port" },
  { "sentinel:///m", nil, "lists host:port,host:port" },
}

describe("redis.parse_url", function()
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

local ok_socket = pcall(require, "socket")

local OPTION_ERRORS = {
  { { sentinels = { { host = "a", port = 1 } } }, "option 'sentinels' needs option 'master_name'" },
  { { sentinels = {}, master_name = "m" }, "option 'sentinels' must be a non-empty list" },
  { { sentinels = { { host = "a" } }, master_name = "m" }, "entry 1 must be { host = a string" },
  { { sentinels = { { host = "a", port = 70000 } }, master_name = "m" }, "entry 1 must be" },
  { { master_name = "m" }, "need option 'sentinels'" },
  { { sentinel_password = "x" }, "need option 'sentinels'" },
  { { sentinels = { { host = "a", port = 1 } }, master_name = "m", path = "/tmp/r.sock" },
    "option 'path' and option 'sentinels' name two servers" },
  { { sentinels = "a:1", master_name = "m" }, "option 'sentinels' must be a table" },
}

describe("redis.new with sentinels: its options", function()
  if not ok_socket then
    pending("needs LuaSocket (lua-socket)")
    return
  end
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
  it("names the master until it knows its address", function()
    local client = redis.new({ sentinels = { { host = "127.0.0.1", port = 1 } }, master_name = "m" })
    assert.are.equal("master 'm'", client.address)
  end)
end)

local ok_servers, servers = pcall(require, "servers")
if not (ok_socket and ok_servers and servers.redis_server and servers.redis_cli) then
  describe("redis client with sentinels, against servers", function()
    pending("needs LuaSocket (lua-socket) and redis-server")
  end)
  return
end
local sentinels = require "sentinels"
local socket = require "socket"

-- What a sentinel may answer that is not a master's address: an error naming it, never a raise.
local GARBAGE = {
  { "garbage-host", "answered something that is not a host and a port", "protocol" },
  { "garbage-port", "answered something that is not a host and a port", "protocol" },
  { "one-element", "answered something that is not a host and a port", "protocol" },
  { "integer", "answered something that is not a host and a port", "protocol" },
  { "unknown", "knows no master named 'unknown'", "protocol" },
  { "huge-bulk", "a reply over max_reply", "limit" },
  { "deep", "a reply nested deeper than 16 arrays", "limit" },
}

describe("redis client with sentinels: hostile sentinels and replicas", function()
  local dir, hostile, master, replica

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
    master = assert(servers.redis(dir))
    assert(support.run("mkdir -p " .. support.quote(dir .. "/replica") .. " "
      .. support.quote(dir .. "/other")))
    replica = assert(servers.redis(dir .. "/replica",
      { args = { "--replicaof", "127.0.0.1", tostring(master.port) } }))
  end)

  teardown(function()
    for _, server in ipairs({ hostile, replica, master }) do
      if server then
        server:stop()
      end
    end
    servers.remove_dir(dir)
  end)

  local function follow(name, list)
    return redis.new({ sentinels = list or { { host = "127.0.0.1", port = hostile.port } },
      master_name = name, read_timeout = 3000 })
  end

  for _, case in ipairs(GARBAGE) do
    it("fails with an error naming the sentinel when it answers " .. case[1], function()
      local reply, err, code = follow(case[1]):call("SET", "k", "v")
      assert.is_nil(reply)
      assert.truthy(err:find("sentinel 127.0.0.1:" .. hostile.port .. ": ", 1, true), err)
      assert.truthy(err:find(case[2], 1, true), err)
      assert.truthy(err:find("redis master '" .. case[1] .. "': no sentinel gave its address", 1,
        true), err)
      assert.are.equal(case[3], code)
    end)
  end

  it("asks the next sentinel when one is down or answers garbage", function()
    local down = servers.free_port()
    local client = follow("addr:127.0.0.1:" .. master.port, {
      { host = "127.0.0.1", port = down }, { host = "127.0.0.1", port = hostile.port } })
    assert.are.equal("OK", client:call("SET", "next", "1"))
    assert.are.equal("127.0.0.1:" .. master.port, client.address)
  end)

  it("sends sentinel_password to the sentinels and password to the master", function()
    local client = redis.new({ sentinels = { { host = "127.0.0.1", port = hostile.port } },
      master_name = "addr:127.0.0.1:" .. master.port, sentinel_password = "s3cret",
      password = "m4ster" })
    local reply, err = client:call("PING")
    assert.is_nil(reply)   -- the master has no password: its AUTH fails
    assert.truthy(err:find("AUTH failed", 1, true), err)
    local events = table.concat(hostile:events(), "\n")
    assert.truthy(events:find("command AUTH s3cret\ncommand SENTINEL get-master-addr-by-name addr:",
      1, true), events)
    assert.is_nil(events:find("m4ster", 1, true), events)
  end)

  it("never writes to a server named as the master that is a replica", function()
    local client = follow("addr:127.0.0.1:" .. replica.port)
    local reply, err, code = client:call("SET", "on-replica", "1")
    assert.is_nil(reply)
    assert.truthy(err:find("redis 127.0.0.1:" .. replica.port .. ": not the master (ROLE says slave)",
      1, true), err)
    assert.are.equal("refused", code)
    assert.are.equal("", replica:cli("GET on-replica"))
  end)

  it("forgets a master that became a replica (READONLY) and never answers READONLY", function()
    local other = assert(servers.redis(dir .. "/other"))
    local client = follow("addr:127.0.0.1:" .. other.port)
    assert.are.equal("OK", client:call("SET", "before", "1"))
    other:cli("REPLICAOF 127.0.0.1 " .. master.port)   -- the kept connection stays open
    local reply, err, code = client:call("SET", "after", "1")
    other:stop()
    assert.is_nil(reply)
    assert.truthy(err:find("not the master (ROLE says slave)", 1, true), err)
    assert.are.equal("refused", code)
    assert.is_nil(err:find("READONLY", 1, true), err)
  end)
end)

-- A real set and a kill -9 take seconds: the ctest integration-redis_sentinel runs it once
-- (JICOO_INTEGRATION=1), the per-runtime passes the parts above.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("redis client with sentinels: a failover", function()
    pending("runs as the ctest integration-redis_sentinel (JICOO_INTEGRATION=1)")
  end)
  return
end

describe("redis client with sentinels: a failover", function()
  local dir, set, client, j

  setup(function()
    dir = servers.temp_dir()
    local why
    set, why = sentinels.start(dir)
    assert(set, why)
    local list = set:list()
    client = redis.new({ sentinels = list, master_name = set.name })
    j = journal.redis({ sentinels = list, master_name = set.name, prefix = "t:", ttl = 100 })
  end)

  teardown(function()
    if set then
      set:stop()
    end
    servers.remove_dir(dir)
  end)

  it("finds the master through the sentinels, and the journal works there", function()
    assert.are.equal("OK", client:call("SET", "a", "1"))
    assert.are.equal("127.0.0.1:" .. set.master.port, client.address)
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal("running", record.state)
    assert.is_true(j:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW))
    assert.are.equal("done", j:get(KEY).state)
    assert.are.equal("done", set.master:cli("HGET " .. "t:d:" .. KEY .. " state"))
  end)

  it("follows the promoted replica after kill -9 of the master, within 20 s", function()
    -- what is written before is on the replica (asynchronous replication: WAIT makes sure)
    assert.are.equal(1, client:call("WAIT", 1, 2000))
    local killed_at = socket.gettime()
    set:kill_master()
    local failures, last, readonly = 0, nil, 0
    local recovered_at
    local n = 0
    while socket.gettime() - killed_at < 20 do
      n = n + 1
      local reply, err = client:call("SET", "after", tostring(n))
      if reply == "OK" then
        recovered_at = socket.gettime()
        break
      end
      failures, last = failures + 1, err
      if err and err:find("READONLY", 1, true) then
        readonly = readonly + 1
      end
      socket.sleep(0.1)
    end
    assert.truthy(recovered_at, "no master after 20 s: " .. tostring(last))
    print(string.format("\nsentinel failover: calls succeed again %.1f s after kill -9 of the"
      .. " master (%d failed calls before)", recovered_at - killed_at, failures))
    assert.are.equal(0, readonly)
    assert.are.equal("127.0.0.1:" .. set.replica.port, client.address)
    -- (the other sentinels learn the new master from the one that led the failover)
    assert.is_true(servers.wait_for(function()
      return set:master_port(2) == set.replica.port and set:master_port(3) == set.replica.port
    end, 10))
    assert.are.equal("done", j:get(KEY).state)   -- the journal follows too
    local _, record = j:acquire("k2", NOW, LEASE, new_delivery("k2"), false)
    assert.are.equal("running", record.state)
    assert.are.equal(tostring(n), set.replica:cli("GET after"))
  end)

  it("is what jicoo-webhook deliveries --redis sentinel://... reads", function()
    local list, url = set:list()
    local plain = journal.redis({ sentinels = list, master_name = set.name })   -- its prefix
    assert.are.equal("running", select(2, plain:acquire("k3", NOW, LEASE, new_delivery("k3"),
      false)).state)
    local code, out, err = require("cli_runner").run("deliveries list --state running --redis "
      .. support.quote(url), "JICOO_JOURNAL_DIR= JICOO_REDIS_PASSWORD= JICOO_REDIS_SENTINEL_PASSWORD=")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("running k3", 1, true), out)
  end)
end)
