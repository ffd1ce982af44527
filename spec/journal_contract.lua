-- The journal's contract (lua/jicoo/webhook/journal/init.lua) as specs for one backend: the same
-- sequence of acquire, update, due, rearm and remove, and the same queries, give the same
-- outcomes on every backend. journal_contract_spec.lua runs it on the memory, SQLite and Redis
-- journals, redis_cluster_spec.lua on a Redis Cluster.
--
--   require("journal_contract")(backend)
--
-- backend: name, make(dir) -> a journal, durable (what j.durable must say) and keeps_done
-- (whether done records are kept and listed).
local busted = require "busted"
local shared = require "journal_shared"

local describe, it, before_each, after_each = busted.describe, busted.it, busted.before_each,
  busted.after_each
local assert = require "luassert"

local NOW, LEASE, KEY = shared.NOW, shared.LEASE, shared.KEY
local new_delivery, temp_dir, remove_dir = shared.new_delivery, shared.temp_dir, shared.remove_dir

return function(backend)
describe("journal." .. backend.name, function()
  local dir, j

  before_each(function()
    dir = temp_dir()
    j = backend.make(dir)
  end)

  after_each(function()
    remove_dir(dir)
  end)

  it("says whether it is durable", function()
    assert.are.equal(backend.durable, j.durable)
  end)

  it("writes a new delivery as running under a lease, its body kept", function()
    assert.are.equal("absent", (j:acquire(KEY, NOW, LEASE, nil, false)))
    local outcome, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal("new", outcome)
    assert.are.equal("running", record.state)
    assert.are.equal(1, record.attempts)
    assert.are.equal(NOW + LEASE, record.lease_until)
    assert.is_string(record.token)
    local stored = j:get(KEY)
    assert.are.equal('{"a":1}\n', stored.body)
    assert.are.equal("guest_booked", stored.event)
    assert.are.equal("bk_1", stored.uid)
    assert.are.equal(NOW, stored.received_at)
    assert.are.equal(record.token, stored.token)
    -- every field acquire answered is kept as answered
    for field, value in pairs(record) do
      assert.are.same(value, stored[field], field)
    end
  end)

  it("answers busy while the lease holds, and hands the delivery over once it runs out", function()
    local _, first = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal("busy", (j:acquire(KEY, NOW + LEASE - 1, LEASE, new_delivery(), true)))
    assert.are.same({}, j:due(NOW + LEASE - 1, 10))
    assert.are.same({ KEY }, (j:due(NOW + LEASE, 10)))
    local outcome, second = j:acquire(KEY, NOW + LEASE, LEASE, nil, false)
    assert.are.equal("taken", outcome)
    assert.are.equal(2, second.attempts)
    assert.are_not.equal(first.token, second.token)
    -- The first attempt's token no longer writes.
    assert.is_false(j:update(KEY, first.token, { state = "done" }, NOW + LEASE))
    assert.is_true(j:update(KEY, second.token, { handlers = { a = true } }, NOW + LEASE))
    assert.are.same({ a = true }, j:get(KEY).handlers)
  end)

  it("keeps a failed delivery until its next attempt is due, unless told to take it", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(j:update(KEY, record.token, { state = "failed", next_at = NOW + 100,
      handlers = { a = true }, errors = { { handler = "b", message = "down" } } }, NOW))
    assert.are.equal("waiting", (j:acquire(KEY, NOW + 99, LEASE, new_delivery(), false)))
    assert.are.same({}, j:due(NOW + 99, 10))
    assert.are.same({ KEY }, (j:due(NOW + 100, 10)))
    local outcome, taken = j:acquire(KEY, NOW + 100, LEASE, nil, false)
    assert.are.equal("taken", outcome)
    assert.are.equal(2, taken.attempts)
    assert.are.same({ a = true }, taken.handlers)
    assert.are.same({ { handler = "b", message = "down" } }, taken.errors)
    assert.is_true(j:update(KEY, taken.token, { state = "failed", next_at = NOW + 500 }, NOW + 100))
    assert.are.equal("taken", (j:acquire(KEY, NOW + 101, LEASE, new_delivery(), true)))
  end)

  it("ends a delivery done: later copies are done, it is due no more", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(j:update(KEY, record.token, { state = "done", handlers = { a = true },
      finished_at = NOW }, NOW))
    assert.are.equal("done", (j:acquire(KEY, NOW + 1, LEASE, new_delivery(), true)))
    assert.are.same({}, j:due(NOW + 10 * LEASE, 10))
    assert.is_false(j:update(KEY, record.token, { state = "failed", next_at = NOW }, NOW))
    if backend.keeps_done then
      local done = j:get(KEY)
      assert.are.equal("done", done.state)
      assert.is_nil(done.body)
      assert.are.same({ a = true }, done.handlers)
      assert.are.equal(KEY, j:list("done")[1].key)
    end
  end)

  it("keeps a dead letter until an operator rearms or removes it", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(j:update(KEY, record.token, { state = "dead", finished_at = NOW,
      errors = { { handler = "b", message = "down" } } }, NOW))
    assert.are.equal("dead", (j:acquire(KEY, NOW + 1, LEASE, new_delivery(), true)))
    assert.are.same({}, j:due(NOW + 10 * LEASE, 10))
    local listed = j:list("dead")
    assert.are.equal(1, #listed)
    assert.are.equal(KEY, listed[1].key)
    assert.are.equal('{"a":1}\n', listed[1].body)

    local rearmed = j:rearm(KEY, NOW + 5)
    assert.are.equal("failed", rearmed.state)
    assert.are.same({ KEY }, (j:due(NOW + 5, 10)))
    local outcome, taken = j:acquire(KEY, NOW + 5, LEASE, nil, false)
    assert.are.equal("taken", outcome)
    assert.are.equal('{"a":1}\n', taken.body)
  end)

  -- An operator's retry keeps the attempts: they go on counting, and the budget of the retry
  -- counts from the attempts made before it (budget_from).
  it("rearms with the attempts kept and the budget counted from them", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal(0, record.budget_from or 0)
    assert.is_nil(record.rearmed_at)
    assert.is_true(j:update(KEY, record.token, { state = "failed", next_at = NOW + 10 }, NOW))
    local _, second = j:acquire(KEY, NOW + 10, LEASE, nil, false)
    assert.are.equal(2, second.attempts)
    assert.is_true(j:update(KEY, second.token, { state = "dead", finished_at = NOW + 10,
      errors = { { handler = "b", message = "down" } } }, NOW + 10))
    local rearmed = j:rearm(KEY, NOW + 20)
    assert.are.equal("failed", rearmed.state)
    assert.are.equal(2, rearmed.attempts)
    assert.are.equal(2, rearmed.budget_from)
    assert.are.equal(NOW + 20, rearmed.rearmed_at)
    assert.is_nil(rearmed.finished_at)
    local stored = j:get(KEY)
    assert.are.equal(2, stored.attempts)
    assert.are.equal(2, stored.budget_from)
    assert.are.equal(NOW + 20, stored.rearmed_at)
    assert.are.same({ { handler = "b", message = "down" } }, stored.errors)
    local found = j:find({ uid = "bk_1" })
    assert.are.equal(2, found[1].budget_from)
    assert.are.equal(NOW + 20, found[1].rearmed_at)
    local _, third = j:acquire(KEY, NOW + 20, LEASE, nil, false)
    assert.are.equal(3, third.attempts)
    assert.are.equal(2, third.budget_from)
    -- a second retry counts from the attempts made by then
    assert.is_true(j:update(KEY, third.token, { state = "dead", finished_at = NOW + 30 }, NOW + 30))
    assert.are.equal(3, j:rearm(KEY, NOW + 40).budget_from)
    assert.are.equal(3, j:get(KEY).attempts)
  end)

  it("rearms only failed and dead deliveries", function()
    assert.are.same({ nil, "not found" }, { j:rearm(KEY, NOW) })
    j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    local rearmed, why = j:rearm(KEY, NOW)
    assert.is_false(rearmed)
    assert.truthy(why:find("running", 1, true), why)
  end)

  it("removes a record, after which the key is new again", function()
    assert.are.same({ nil, "not found" }, { j:remove(KEY) })
    j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(j:remove(KEY))
    assert.is_nil(j:get(KEY))
    assert.are.equal("new", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
  end)

  it("lists by state", function()
    local keys = { "k/running/t", "k/failed/t", "k/dead/t" }
    for _, key in ipairs(keys) do
      local _, record = j:acquire(key, NOW, LEASE, new_delivery(key), false)
      local state = key:match("^k/(%a+)/")
      if state ~= "running" then
        j:update(key, record.token, { state = state, next_at = NOW + 1000 }, NOW)
      end
    end
    for _, key in ipairs(keys) do
      local state = key:match("^k/(%a+)/")
      local listed = j:list(state)
      assert.are.equal(1, #listed, state)
      assert.are.equal(key, listed[1].key)
      assert.are.equal(state, listed[1].state)
    end
    assert.are.equal(3, #j:list("all"))
  end)

  -- find and counts (skipped by a backend that has no queries)
  local with_queries = it

  -- Five deliveries of two bookings and two events, received a second apart, in these states.
  local function five()
    local rows = {
      { "guest_booked/bk_1/t1", "guest_booked", "bk_1", "done" },
      { "guest_cancelled/bk_1/t2", "guest_cancelled", "bk_1", "failed", "crm: down" },
      { "guest_booked/bk_2/t3", "guest_booked", "bk_2", "dead", "slack: 500 from hooks" },
      { "guest_booked/bk_3/t4", "guest_booked", "bk_3", "running" },
      { "guest_cancelled/bk_2/t5", "guest_cancelled", "bk_2", "dead", "crm: timeout" },
    }
    for i, row in ipairs(rows) do
      local key, event, uid, state, message = row[1], row[2], row[3], row[4], row[5]
      local delivery = { key = key, event = event, uid = uid, body = "{}", received_at = NOW + i }
      local _, record = j:acquire(key, NOW + i, LEASE, delivery, false)
      if state ~= "running" then
        assert.is_true(j:update(key, record.token, { state = state, next_at = NOW + 1000,
          finished_at = NOW + i, errors = message and { { handler = "h.lua", message = message } }
            or {} }, NOW + i))
      end
    end
    return rows
  end

  local function keys_of(records)
    local keys = {}
    for i, record in ipairs(records) do
      keys[i] = record.key
    end
    return keys
  end

  with_queries("finds by state, event, uid, time and error text, oldest first", function()
    five()
    local cases = {
      { {}, backend.keeps_done and { 1, 2, 3, 4, 5 } or { 2, 3, 4, 5 } },
      { { state = "dead" }, { 3, 5 } },
      { { event = "guest_cancelled" }, { 2, 5 } },
      { { uid = "bk_2" }, { 3, 5 } },
      { { since = NOW + 2, ["until"] = NOW + 4 }, { 2, 3 } },
      { { error = "crm" }, { 2, 5 } },
      { { error = "hooks", state = "dead" }, { 3 } },
      { { state = "dead", event = "guest_cancelled", uid = "bk_2" }, { 5 } },
      { { state = "failed", uid = "bk_9" }, {} },
    }
    local all = {
      "guest_booked/bk_1/t1", "guest_cancelled/bk_1/t2", "guest_booked/bk_2/t3",
      "guest_booked/bk_3/t4", "guest_cancelled/bk_2/t5",
    }
    for _, case in ipairs(cases) do
      local expected = {}
      for i, n in ipairs(case[2]) do
        expected[i] = all[n]
      end
      local records, after = j:find(case[1])
      assert.are.same(expected, keys_of(records))
      assert.is_nil(after)
    end
    local dead = j:find({ state = "dead" })
    assert.is_nil(dead[1].body)
    assert.are.equal("slack: 500 from hooks", dead[1].errors[1].message)
    assert.are.equal("bk_2", dead[1].uid)
  end)

  with_queries("finds a page at a time, with the cursor it gave", function()
    five()
    local seen, after, pages = {}, nil, 0
    repeat
      local records
      records, after = j:find({ event = "guest_booked", limit = 1, after = after })
      pages = pages + 1
      for _, record in ipairs(records) do
        seen[#seen + 1] = record.key
      end
    until after == nil or pages > 5
    local expected = backend.keeps_done and
      { "guest_booked/bk_1/t1", "guest_booked/bk_2/t3", "guest_booked/bk_3/t4" }
      or { "guest_booked/bk_2/t3", "guest_booked/bk_3/t4" }
    assert.are.same(expected, seen)
  end)

  with_queries("counts by state and by event", function()
    five()
    local counts = j:counts()
    assert.are.same({ running = 1, failed = 1, dead = 2, done = backend.keeps_done and 1 or nil },
      counts.states)
    assert.are.same({ running = 1, dead = 1, done = backend.keeps_done and 1 or nil },
      counts.events.guest_booked)
    assert.are.same({ failed = 1, dead = 1 }, counts.events.guest_cancelled)
    j:remove("guest_booked/bk_2/t3")
    j:rearm("guest_cancelled/bk_2/t5", NOW + 10)
    counts = j:counts()
    assert.are.same({ failed = 2, running = 1 }, { failed = counts.states.failed,
      running = counts.states.running })
    assert.is_nil(counts.states.dead)
  end)

  it("says, on acquire and on an update that ends the running, whether the booking has no other record", function()
    local _, first, alone = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(alone)
    local ok, still = j:update(KEY, first.token, { handlers = { a = true } }, NOW)
    assert.is_true(ok)
    assert.is_nil(still)   -- still running: nobody asked
    local later = "guest_cancelled/bk_1/2024-03-02T10:00:05+09:00"
    local _, second
    _, second, alone = j:acquire(later, NOW, LEASE, new_delivery(later), false)
    assert.is_false(alone)
    ok, still = j:update(KEY, first.token, { handlers = { a = true, b = true } }, NOW)
    assert.is_true(ok)
    assert.is_nil(still)
    ok, still = j:update(KEY, first.token, { state = "failed", next_at = NOW }, NOW)
    assert.is_true(ok)
    assert.is_false(still)
    -- taken again: the other record is still there
    _, _, alone = j:acquire(KEY, NOW, LEASE, nil, true)
    assert.is_false(alone)
    local other = new_delivery("guest_booked/bk_2/t")
    other.uid = "bk_2"
    local other_record
    _, other_record, alone = j:acquire(other.key, NOW, LEASE, other, false)
    assert.is_true(alone)
    ok, still = j:update(other.key, other_record.token, { state = "done", finished_at = NOW }, NOW)
    assert.is_true(ok)
    assert.is_true(still)
    assert.is_false((j:update(later, "not its token", { state = "done", finished_at = NOW }, NOW)))
    ok, still = j:update(later, second.token, { state = "done", finished_at = NOW }, NOW)
    assert.is_true(ok)
    assert.is_false(still)   -- KEY is still running
  end)

  it("takes keys holding any byte, and long ones", function()
    -- A key is valid UTF-8, as every string parse gives (uids included).
  local keys = { "guest_booked/a%2Fb c\n\0\195\169/2024", "x/" .. string.rep("u", 5000) .. "/t" }
    for _, key in ipairs(keys) do
      assert.are.equal("new", (j:acquire(key, NOW, LEASE, new_delivery(key), false)))
      assert.are.equal(key, j:get(key).key)
      assert.are.equal("busy", (j:acquire(key, NOW, LEASE, new_delivery(key), false)))
    end
  end)
end)
end
