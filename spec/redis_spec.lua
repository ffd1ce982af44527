-- The Redis journal between two real nginx instances sharing one redis-server (no persistence), on
-- 127.0.0.1: a storm of concurrent duplicates runs the handler once; with Redis stopped the
-- answer is 500 (never a skipped delivery), and the retries after it returns are handled once; a
-- node killed mid-handler leaves nothing the other cannot finish; a booking's changes run in
-- order whichever node each reaches.
-- Runs as the ctest integration-redis (JICOO_INTEGRATION=1); the per-runtime Busted passes
-- skip it.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("redis integration", function()
    pending("runs as the ctest integration-redis (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"

local SECRET = "whsec_redis_spec"
local STORM = 50

local missing = servers.missing(true)
if #missing > 0 then
  describe("redis integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local TEMPLATE = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json"):gsub("%s+$", "")
local CREATED_AT = "2024-03-01T10:00:05+09:00"

-- A delivery of its own (the Tokyo fixture under another booking uid), written to a file.
local function delivery(dir, uid)
  local path = dir .. "/" .. uid .. ".json"
  support.write(path, (TEMPLATE:gsub('"uid":"bk_7Hq2"', '"uid":"' .. uid .. '"')))
  return path, "guest_booked/" .. uid .. "/" .. CREATED_AT
end

local function signature(path)
  return { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, os.time(), path) }
end

local function handled(dir)
  return (servers.counts(dir .. "/handled.log"))
end

-- The nginx nodes of one describe block sharing one redis-server (two unless told), each with
-- the example receiver journaling there, all writing their handlers' logs to one folder;
-- started in setup, stopped by pid in teardown.
local function with_nodes(env, opts)
  local state = { nginx = {} }
  setup(function()
    state.dir = servers.temp_dir()
    state.output = state.dir .. "/out"
    assert(support.run("mkdir -p " .. support.quote(state.output)))
    local log
    state.redis, log = servers.redis(state.dir)
    assert(state.redis, "redis-server did not start: " .. tostring(log))
    for i = 1, 2 do
      local full_env = {
        JICOO_WEBHOOK_SECRET = SECRET,
        JICOO_OUTPUT_DIR = state.output,
        JICOO_REDIS = "127.0.0.1:" .. state.redis.port,
      }
      for k, v in pairs(env) do
        full_env[k] = v
      end
      local server
      server, log = servers.nginx_server(state.dir, "nginx" .. i, function(port)
        return servers.config(port, opts)
      end, full_env)
      assert(server, "nginx did not start:\n" .. tostring(log))
      state.nginx[i] = server
    end
  end)
  teardown(function()
    for _, server in ipairs(state.nginx) do
      server:stop()
    end
    if state.redis then
      state.redis:stop()
    end
    servers.remove_dir(state.dir)
  end)
  return state
end

describe("redis journal: two nginx instances, one redis-server", function()
  local state = with_nodes({ JICOO_HANDLERS = servers.spec_dir .. "/nginx_handlers",
    JICOO_TEST_SLEEP = "0.2" }, { workers = 2 })

  it("runs the handler once for " .. STORM .. " concurrent copies of one delivery", function()
    local path, key = delivery(state.dir, "storm1")
    local urls = {}
    for i = 1, STORM do
      urls[i] = state.nginx[i % 2 + 1]:url()
    end
    local answers = servers.post_parallel(urls, path, signature(path))
    assert.are.equal(STORM, #answers)
    local results = {}
    for _, answer in ipairs(answers) do
      local status, body = answer:match("^(%d+) (.*)$")
      assert.are.equal("200", status, answer)
      local result = cjson.decode(body).result
      results[result] = (results[result] or 0) + 1
    end
    print(string.format("\nstorm: %d copies to 2 nginx -> %d handled, %d duplicate",
      STORM, results.handled or 0, results.duplicate or 0))
    assert.are.same({ handled = 1, duplicate = STORM - 1 }, results)
    assert.are.same({ [key] = 1 }, handled(state.output))
    assert.are.equal("1", state.redis:cli("GET " .. support.quote("handled:" .. key)))
    -- The journal's record: a hash, done, without its body, kept for the ttl (3 days) until the
    -- sweep after it, with Redis's expiry a day later as a backstop; in its event's done set.
    local record = support.quote("jicoo-webhook:d:" .. key)
    assert.are.equal("done", state.redis:cli("HGET " .. record .. " state"))
    assert.are.equal("0", state.redis:cli("HEXISTS " .. record .. " body"))
    local ttl = tonumber(state.redis:cli("TTL " .. record))
    assert.truthy(ttl and ttl > 4 * 24 * 3600 - 60 and ttl <= 4 * 24 * 3600, tostring(ttl))
    local expires_at = tonumber(state.redis:cli("HGET " .. record .. " expires_at"))
    assert.are.equal(expires_at, tonumber(state.redis:cli("ZSCORE jicoo-webhook:done:guest_booked "
      .. support.quote(key))))
  end)

  it("answers 500 while Redis is down, and handles every retry once it is back", function()
    local deliveries = {}
    for i = 1, 6 do
      local path, key = delivery(state.dir, "outage" .. i)
      deliveries[i] = { path = path, key = key, server = state.nginx[i % 2 + 1] }
    end
    -- The first two are handled before the outage.
    for i = 1, 2 do
      local status = servers.post(deliveries[i].server:url(), deliveries[i].path, signature(deliveries[i].path))
      assert.are.equal("200", status)
    end

    state.redis:stop()
    local failed = 0
    for i = 3, 6 do
      local d = deliveries[i]
      local status, body = servers.post(d.server:url(), d.path, signature(d.path))
      assert.are.equal("500", status, body)
      assert.are.equal("store_failed", cjson.decode(body).error)
      failed = failed + 1
    end
    for _, server in ipairs(state.nginx) do
      assert.truthy(server:log():find("answered 500: stage=store", 1, true))
    end

    assert.is_true(state.redis:start(), "redis-server did not restart on port " .. state.redis.port)
    -- Jicoo retries what got 500: a few attempts each, as its retry schedule would.
    local attempts = 0
    for i = 3, 6 do
      local d = deliveries[i]
      local status, body
      for _ = 1, 3 do
        attempts = attempts + 1
        status, body = servers.post(d.server:url(), d.path, signature(d.path))
        if status == "200" then
          break
        end
        servers.sleep(0.2)
      end
      assert.are.equal("200", status, body)
      assert.are.equal("handled", cjson.decode(body).result)
    end
    print(string.format("\noutage: %d deliveries answered 500 while Redis was down;"
      .. " after the restart %d attempts handled all of them", failed, attempts))
    -- A further retry of each is a duplicate now.
    for i = 3, 6 do
      local d = deliveries[i]
      local status, body = servers.post(d.server:url(), d.path, signature(d.path))
      assert.are.equal("200", status)
      assert.are.equal("duplicate", cjson.decode(body).result)
    end
    local counts = handled(state.output)
    for _, d in ipairs(deliveries) do
      assert.are.equal(1, counts[d.key], d.key)
    end
  end)
end)

describe("redis journal: a node killed mid-handler", function()
  local state = with_nodes({ JICOO_HANDLERS = servers.spec_dir .. "/durability_handlers",
    JICOO_LEASE = "3", JICOO_RETRY_DELAYS = "1,1" }, { workers = 1 })

  local function lines(name)
    return (servers.counts(state.output .. "/" .. name))
  end

  local wait_for = servers.wait_for

  it("answers 200 to a copy sent to the other node while the first still runs", function()
    support.write(state.output .. "/sleep", "1")
    local path, key = delivery(state.dir, "copy1")
    local answers = servers.post_parallel({ state.nginx[1]:url(), state.nginx[2]:url() }, path,
      signature(path))
    table.sort(answers)
    assert.are.equal(2, #answers)
    local results = {}
    for _, answer in ipairs(answers) do
      assert.truthy(answer:match("^200 "), answer)
      results[#results + 1] = cjson.decode(answer:match("^%d+ (.*)$")).result
    end
    table.sort(results)
    assert.are.same({ "duplicate", "handled" }, results)
    assert.are.equal(1, lines("booked.log")[key])
  end)
  it("leaves nothing the other node cannot finish once the lease runs out", function()
    support.write(state.output .. "/sleep", "3")
    local path, key = delivery(state.dir, "killed1")
    local victim, survivor = state.nginx[1], state.nginx[2]
    support.run("(curl -s -o /dev/null --max-time 10 -H 'Content-Type: application/json' -H "
      .. support.quote("Jicoo-Webhook-Signature: " .. servers.sign(SECRET, os.time(), path))
      .. " --data-binary @" .. support.quote(path) .. " " .. support.quote(victim:url())
      .. " >/dev/null 2>&1 &)")
    assert.is_true(wait_for(function() return lines("attempts.log")[key] == 1 end, 5))
    -- The whole node goes: its master first, so that no worker is started again.
    local workers = support.run("pgrep -P " .. victim.pid)
    assert(support.run("kill -9 " .. victim.pid .. " " .. workers:gsub("%s+", " ")))
    victim.pid = nil
    assert.are.equal("running", state.redis:cli("HGET " .. support.quote("jicoo-webhook:d:" .. key) .. " state"))

    assert.is_true(wait_for(function() return lines("booked.log")[key] == 1 end, 15), survivor:log())
    assert.are.equal(1, lines("any.log")[key])
    assert.are.equal(2, lines("attempts.log")[key])
    assert.are.equal("done", state.redis:cli("HGET " .. support.quote("jicoo-webhook:d:" .. key) .. " state"))
    assert.truthy(survivor:log():find("attempt 2 of " .. key .. ": handled", 1, true))
  end)
end)

describe("redis journal: a booking's changes in order across two nodes", function()
  local state = with_nodes({ JICOO_HANDLERS = servers.spec_dir .. "/durability_handlers",
    JICOO_RETRY_DELAYS = "1,1,1" }, { workers = 1 })

  local function lines(name)
    return (servers.counts(state.output .. "/" .. name))
  end

  it("runs a cancellation sent to one node only after the other node's booking succeeded", function()
    support.write(state.output .. "/fail_times", "2")
    local booked, booked_key = delivery(state.dir, "order1")
    local cancelled = state.dir .. "/order1-cancelled.json"
    support.write(cancelled, (support.read(booked):gsub('"event":"guest_booked"',
      '"event":"guest_cancelled"'):gsub('"createdAt":"2024%-03%-01T10:00:05%+09:00"',
      '"createdAt":"2024-03-01T10:00:35+09:00"', 1)))
    local cancelled_key = "guest_cancelled/order1/2024-03-01T10:00:35+09:00"
    local status = servers.post(state.nginx[1]:url(), booked, signature(booked))
    assert.are.equal("500", status)                                   -- its first attempt failed
    local body
    status, body = servers.post(state.nginx[2]:url(), cancelled, signature(cancelled))
    assert.are.equal("200", status, body)
    assert.are.equal("waiting", cjson.decode(body).result, body)
    -- never the cancellation's handler before the booking's success: any.log is read first
    local ok = servers.wait_for(function()
      local ran_cancel = lines("any.log")[cancelled_key]
      local booked_done = lines("booked.log")[booked_key]
      assert(not ran_cancel or booked_done, "the cancellation ran before the booking succeeded")
      return ran_cancel == 1
    end, 15)
    assert.is_true(ok, state.nginx[1]:log() .. state.nginx[2]:log())
    assert.are.equal(3, lines("attempts.log")[booked_key])
    assert.are.equal(1, lines("any.log")[cancelled_key])
    assert.are.equal("done", state.redis:cli("HGET " .. support.quote("jicoo-webhook:d:"
      .. cancelled_key) .. " state"))
  end)
end)
