-- The Redis journal behind Redis Sentinel, between two real nginx instances on 127.0.0.1
-- (JICOO_REDIS=sentinel://...): deliveries keep coming, one at a time, while the master is
-- killed with kill -9; each answered 500 is sent again, as Jicoo would, until a 2xx. Every
-- delivery answered 2xx runs its handler exactly once; the answers are counted and the time
-- to the first 2xx after the kill printed. The set is spec/sentinels.lua's.
-- Runs as the ctest integration-redis_failover (JICOO_INTEGRATION=1); the per-runtime Busted
-- passes skip it.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("redis failover integration", function()
    pending("runs as the ctest integration-redis_failover (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"
local sentinels = require "sentinels"

local SECRET = "whsec_failover_spec"
local DELIVERIES = 60
local KILL_AFTER = 15        -- the master dies once this many deliveries are answered
local DEADLINE = 40          -- seconds the whole flow may take

local missing = servers.missing(true)
if #missing > 0 then
  describe("redis failover integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local TEMPLATE = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json"):gsub("%s+$", "")
local CREATED_AT = "2024-03-01T10:00:05+09:00"

local function delivery(dir, uid)
  local path = dir .. "/" .. uid .. ".json"
  support.write(path, (TEMPLATE:gsub('"uid":"bk_7Hq2"', '"uid":"' .. uid .. '"')))
  return path, "guest_booked/" .. uid .. "/" .. CREATED_AT
end

local function signature(path)
  return { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, os.time(), path) }
end

local function now()
  return tonumber(support.run("date +%s.%N"):match("[%d%.]+"))
end

describe("redis journal behind Sentinel: kill -9 of the master under two nginx", function()
  local state = { nginx = {} }

  setup(function()
    state.dir = servers.temp_dir()
    state.output = state.dir .. "/out"
    assert(support.run("mkdir -p " .. support.quote(state.output)))
    local why
    state.set, why = sentinels.start(state.dir .. "/redis")
    assert(state.set, why)
    local _, url = state.set:list()
    for i = 1, 2 do
      local server, log = servers.nginx_server(state.dir, "nginx" .. i, function(port)
        return servers.config(port, { workers = 2 })
      end, {
        JICOO_WEBHOOK_SECRET = SECRET,
        JICOO_OUTPUT_DIR = state.output,
        JICOO_HANDLERS = servers.spec_dir .. "/nginx_handlers",
        JICOO_REDIS = url,
      })
      assert(server, "nginx did not start:\n" .. tostring(log))
      state.nginx[i] = server
    end
  end)

  teardown(function()
    for _, server in ipairs(state.nginx) do
      server:stop()
    end
    if state.set then
      state.set:stop()
    end
    servers.remove_dir(state.dir)
  end)

  it("handles every delivery answered 2xx exactly once, 500s while no master, 200s after", function()
    local started = now()
    local statuses, keys = {}, {}
    local killed_at, recovered_at
    local answers = { before = 0, failover = {}, after = 0 }
    for i = 1, DELIVERIES do
      local path, key = delivery(state.dir, "failover" .. i)
      keys[i] = key
      local server = state.nginx[i % 2 + 1]
      local status, body
      repeat
        status, body = servers.post(server:url(), path, signature(path))
        local phase = (not killed_at and "before") or (not recovered_at and "failover") or "after"
        if phase == "failover" then
          answers.failover[status] = (answers.failover[status] or 0) + 1
        else
          answers[phase] = answers[phase] + 1
        end
        if status == "200" and killed_at and not recovered_at then
          recovered_at = now()
        elseif status ~= "200" then
          assert.are.equal("500", status, body)
          support.run("sleep 0.1")
        end
        assert(now() - started < DEADLINE, "over " .. DEADLINE .. " s; last answer " .. status
          .. " " .. tostring(body))
      until status == "200"
      statuses[i] = cjson.decode(body).result
      if i == KILL_AFTER then
        state.set:kill_master()
        killed_at = now()
      end
    end
    assert.truthy(recovered_at, "no 2xx after the kill")
    local failover = {}
    for status, n in pairs(answers.failover) do
      failover[#failover + 1] = n .. " x " .. status
    end
    table.sort(failover)
    print(string.format("\nsentinel failover under nginx: %d deliveries; the first 2xx %.1f s after"
      .. " kill -9 of the master; answers: %d before, %s during, %d after; %.1f s in all",
      DELIVERIES, recovered_at - killed_at, answers.before, table.concat(failover, ", "),
      answers.after, now() - started))
    assert.truthy((answers.failover["500"] or 0) > 0, "no 500 while there was no master")

    local counts = servers.counts(state.output .. "/handled.log")
    for i = 1, DELIVERIES do
      assert.are.equal("handled", statuses[i], keys[i])
      assert.are.equal(1, counts[keys[i]], keys[i])
    end
    -- A copy of a delivery handled before the kill is a duplicate on the new master.
    for i = 1, 5 do
      local path = state.dir .. "/failover" .. i .. ".json"
      local status, body = servers.post(state.nginx[1]:url(), path, signature(path))
      assert.are.equal("200", status, body)
      assert.are.equal("duplicate", cjson.decode(body).result)
    end
    assert.are.equal(1, servers.counts(state.output .. "/handled.log")[keys[1]])
    assert.are.equal(state.set.replica.port, state.set:master_port(1))
  end)
end)
