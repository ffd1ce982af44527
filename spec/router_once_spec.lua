-- The router runs each delivery's handlers once: a copy is a duplicate, a copy arriving while
-- the first runs is answered 503 by the memory journal, the store key is ev:key(). And what
-- failing handlers, on_error and stores do: the answer, who is told, the claim released so that
-- the sender's retry runs the handler that failed and no other.
local store = require "jicoo.webhook.store"
local shared = require "router_shared"

local NOW, fixture, signed = shared.NOW, shared.fixture, shared.signed
local new_router, recorder, decode = shared.new_router, shared.recorder, shared.decode
local BOOKED = shared.BOOKED

describe("router: exactly once", function()
  it("runs the handlers of a delivery sent twice once; the second answer is 200 duplicate", function()
    local r = new_router()
    local calls = recorder(r, { "guest_booked", "*" })
    local first = r:handle(BOOKED, signed(BOOKED))
    local second = r:handle(BOOKED, signed(BOOKED, NOW + 60))   -- a retry, signed again
    assert.are.equal(200, first.status)
    assert.are.equal("handled", decode(first).result)
    assert.are.equal(200, second.status)
    assert.are.equal("duplicate", decode(second).result)
    assert.is_true(second.duplicate)
    assert.are.same({ "guest_booked:guest_booked", "*:guest_booked" }, calls)
  end)

  it("runs two different changes of one booking both", function()
    local r = new_router()
    local calls = recorder(r, { "*" })
    local rescheduled = fixture("lenient", "portal_guest_rescheduled.json")
    local later = BOOKED:gsub('"createdAt": "2020%-11%-23T17:51:19.000Z"',
      '"createdAt": "2020-11-23T18:00:00.000Z"', 1)
    assert.are_not.equal(BOOKED, later)
    for _, body in ipairs({ BOOKED, rescheduled, later, BOOKED }) do
      assert.are.equal(200, r:handle(body, signed(body)).status)
    end
    assert.are.same({ "*:guest_booked", "*:guest_rescheduled", "*:guest_booked" }, calls)
  end)

  it("takes the same event in another JSON layout for the same delivery", function()
    -- Same event, uid and createdAt: the key says it is the same delivery.
    local r = new_router()
    local calls = recorder(r, { "*" })
    local full = fixture("valid", "strict_guest_booked_full.json")
    assert.are.equal("handled", decode(r:handle(BOOKED, signed(BOOKED))).result)
    assert.are.equal("duplicate", decode(r:handle(full, signed(full))).result)
    assert.are.equal(1, #calls)
  end)

  it("a copy arriving while the first is still running does not run the handlers; the memory"
      .. " journal (not durable) answers it 503 so that the sender tries again", function()
    local r = new_router()
    local runs, nested = 0, nil
    r:on("guest_booked", function()
      runs = runs + 1
      if runs == 1 then
        -- The sender's retry arrives before this handler has finished.
        nested = r:handle(BOOKED, signed(BOOKED))
      end
    end)
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.equal(1, runs)
    assert.are.equal(503, nested.status)
    assert.are.equal("in_progress", decode(nested).error)
    assert.are.equal(300, nested.retry_after)   -- the lease's length: nothing has moved the clock
    -- Once it is done, the next copy is a duplicate.
    assert.are.equal("duplicate", decode(r:handle(BOOKED, signed(BOOKED))).result)
  end)

  it("uses ev:key() as the store key, with the router's ttl", function()
    local seen = {}
    local spy_store = {
      add = function(_, key, ttl)
        seen[#seen + 1] = { key, ttl }
        return true
      end,
      delete = function() return true end,
    }
    local r = new_router({ store = spy_store, ttl = 3600 })
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.same({ { "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z", 3600 } }, seen)
    assert.are.equal(seen[1][1], res.key)
  end)
end)

describe("router: failures", function()
  it("a handler that raises: the others still run, 500, on_error told; the retry runs only it", function()
    local r = new_router()
    local order, reported = {}, {}
    r:on("guest_booked", function()
      order[#order + 1] = "first"
    end)
    local fail = true
    r:on("guest_booked", function()
      order[#order + 1] = "failing"
      if fail then
        error("boom: mail server down")
      end
    end)
    r:on("*", function()
      order[#order + 1] = "any"
    end)
    r:on_error(function(message, ev, ctx)
      reported[#reported + 1] = { message = message, event = ev.event, key = ctx.key }
    end)

    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(500, res.status)
    local doc = decode(res)
    assert.are.equal("handler_failed", doc.error)
    assert.are.equal(1, doc.failed)
    assert.are.same({ "first", "failing", "any" }, order)
    assert.are.equal(1, #reported)
    assert.truthy(reported[1].message:find("boom: mail server down", 1, true))
    assert.truthy(reported[1].message:find("stack traceback", 1, true))
    assert.are.equal("guest_booked", reported[1].event)
    assert.are.equal("guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z", reported[1].key)
    assert.are.equal("handler", res.errors[1].stage)
    assert.truthy(res.errors[1].message:find("boom", 1, true))
    assert.is_false(res.handlers[2].ok)

    -- The sender's retry runs the one that failed, not those that succeeded, and succeeds now.
    fail = false
    res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.same({ "first", "failing", "any", "failing" }, order)
    -- Handled now: a third delivery is a duplicate.
    assert.are.equal("duplicate", decode(r:handle(BOOKED, signed(BOOKED))).result)
  end)

  it("catches errors that are not strings", function()
    local r = new_router()
    r:on("*", function()
      error({ reason = "table error" })
    end)
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(500, res.status)
  end)

  it("a handler that returns nil, message or false has failed, as Lua's functions fail", function()
    for _, case in ipairs({
      { function() return nil, "CRM said no" end, "CRM said no" },
      { function() return false, "quota" end, "quota" },
      { function() return false end, "returned false" },
      { function() return nil, { code = 7 } end, "table: " },
    }) do
      local r = new_router()
      r:on("guest_booked", case[1])
      local res = r:handle(BOOKED, signed(BOOKED))
      assert.are.equal(500, res.status)
      assert.truthy(res.handlers[1].error:find(case[2], 1, true), res.handlers[1].error)
      local record = r.journal:get(res.key)
      assert.are.equal("failed", record.state)
      assert.truthy(record.errors[1].message:find(case[2], 1, true))
    end
    for _, fn in ipairs({ function() return true end, function() end, function() return nil end,
        function() return "done", "extra" end }) do
      local r = new_router()
      r:on("guest_booked", fn)
      assert.are.equal(200, r:handle(BOOKED, signed(BOOKED)).status)
    end
  end)

  it("logs a handler failure when no on_error is registered", function()
    local r, lines = new_router()
    r:on("*", function()
      error("kaput")
    end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("error: .*kaput"))
  end)

  it("an on_error that raises is logged and does not change the answer", function()
    local r, lines = new_router()
    r:on("*", function() error("first") end)
    r:on_error(function() error("reporter broken") end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("reporter broken", 1, true))
  end)

  local broken_stores = {
    { "returns nil, err", function() return nil, "connection refused" end, "connection refused" },
    { "raises", function() error("redis exploded") end, "redis exploded" },
    { "returns nothing", function() end, "store:add returned nil" },
  }
  for _, case in ipairs(broken_stores) do
    it("a store that " .. case[1] .. " -> 500 and no handler runs", function()
      local r = new_router({ store = { add = case[2], delete = function() return true end } })
      local calls = recorder(r, { "*" })
      local reported = {}
      r:on_error(function(message) reported[#reported + 1] = message end)
      local res = r:handle(BOOKED, signed(BOOKED))
      assert.are.equal(500, res.status)
      assert.are.equal("store_failed", decode(res).error)
      assert.are.same({}, calls)
      assert.are.equal(1, #reported)
      assert.truthy(reported[1]:find(case[3], 1, true))
      assert.are.equal("store", res.errors[1].stage)
    end)
  end

  it("a store that says false -> 200 duplicate, no handler runs", function()
    local r = new_router({ store = { add = function() return false end, delete = function() end } })
    local calls = recorder(r, { "*" })
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.equal("duplicate", decode(res).result)
    assert.are.same({}, calls)
  end)

  it("releases the claim through store:delete when a handler fails", function()
    local deleted = {}
    local memory = store.memory()
    local spy = {
      add = function(_, key, ttl) return memory:add(key, ttl) end,
      delete = function(_, key)
        deleted[#deleted + 1] = key
        return memory:delete(key)
      end,
    }
    local r = new_router({ store = spy })
    r:on("*", function() error("no") end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.same({ "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z" }, deleted)
  end)

  it("a failing release is logged, the answer stays 500", function()
    local r, lines = new_router({ store = {
      add = function() return true end,
      delete = function() return nil, "timeout" end,
    } })
    r:on("*", function() error("no") end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("cannot release.*timeout"))
  end)
end)
