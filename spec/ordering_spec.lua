-- A booking's deliveries in order: a later change of a booking waits while an earlier one is
-- neither done nor dead, and runs right after it (in the request or the scheduler's pass that
-- finished it); one that comes after a later one already ran runs with ctx.out_of_order; an
-- earlier one that ends dead lets the later ones go; `ordered = false` turns it off. On the
-- SQLite journal and the memory journal (Redis, across nodes: spec/redis_spec.lua).
local shared = require "router_shared"
local journal = require "jicoo.webhook.journal"
local journal_shared = require "journal_shared"

local NOW, signed = shared.NOW, shared.signed
local TEMPLATE = shared.fixture("lenient", "portal_guest_booked.json")

-- A change of booking bk_order: its event, and the envelope's createdAt some seconds after the
-- booking.
local function change(event, seconds)
  local body = TEMPLATE:gsub('"event": "guest_booked"', '"event": "' .. event .. '"', 1)
  return (body:gsub('"createdAt": "2020%-11%-23T17:51:19%.000Z"',
    string.format('"createdAt": "2020-11-23T17:%02d:%02d.000Z"', 52 + math.floor(seconds / 60),
      seconds % 60), 1))
end

describe("a booking's deliveries in order", function()
  local dir, now, calls, fail_booked
  before_each(function()
    dir = journal_shared.temp_dir()
    now, calls, fail_booked = NOW, {}, 0
  end)
  after_each(function()
    journal_shared.remove_dir(dir)
  end)

  local function new_router(opts)
    opts = opts or {}
    opts.now = function() return now end
    opts.retry_delays = opts.retry_delays or { 10, 10, 10 }
    if opts.journal == nil then
      opts.journal = journal.sqlite({ dir = dir .. "/journal" })
    elseif opts.journal == false then
      opts.journal = nil
    end
    local router, lines = shared.new_router(opts)
    for _, event in ipairs({ "guest_booked", "guest_rescheduled", "guest_cancelled" }) do
      router:on(event, function(_, ctx)
        if event == "guest_booked" and fail_booked > 0 then
          fail_booked = fail_booked - 1
          error("the CRM is down", 0)
        end
        calls[#calls + 1] = event .. (ctx.out_of_order and " (out of order)" or "")
      end)
    end
    return router, lines
  end

  local function send(router, event, seconds)
    local body = change(event, seconds)
    return router:handle(body, signed(body, now))
  end

  for _, kind in ipairs({ "sqlite", "memory" }) do
    it("asks the " .. kind .. " journal for a booking's records only when it has others", function()
      local j = kind == "sqlite" and journal.sqlite({ dir = dir .. "/journal" }) or journal.memory()
      local finds = 0
      local find = j.find
      j.find = function(self, filter)
        finds = finds + 1
        return find(self, filter)
      end
      local router = new_router({ journal = j })
      assert.are.equal(200, send(router, "guest_booked", 0).status)
      assert.are.equal(0, finds)   -- the booking's only delivery: nothing to order
      assert.are.equal(200, send(router, "guest_cancelled", 60).status)
      -- the SQLite journal keeps the done one: the second looks before and after its handlers
      assert.are.equal(kind == "sqlite" and 2 or 0, finds)
      assert.are.same({ "guest_booked", "guest_cancelled" }, calls)
    end)
  end

  it("runs a cancellation only after the booking's handler succeeded, however many tries", function()
    local router, lines = new_router()
    fail_booked = 2
    assert.are.equal(500, send(router, "guest_booked", 0).status)
    local res = send(router, "guest_cancelled", 30)
    assert.are.equal(200, res.status)
    assert.truthy(res.body:find('"result":"waiting"', 1, true), res.body)
    assert.are.same({}, calls)
    now = now + 20
    router:run_due()   -- the booking fails again; the cancellation waits on
    assert.are.same({}, calls)
    now = now + 20
    router:run_due()   -- the booking succeeds; the cancellation runs right after it
    assert.are.same({ "guest_booked", "guest_cancelled" }, calls)
    local records = router.journal:find({ uid = "ACDADADASS" })
    for _, record in ipairs(records) do
      assert.are.equal("done", record.state, record.key)
    end
    assert.truthy(table.concat(lines, "\n"):find("waits for guest_booked/ACDADADASS/", 1, true))
    -- its wait was not an attempt
    assert.are.equal(1, router.journal:get(records[2].key).attempts)
  end)

  it("runs a chain of changes in the order they were made", function()
    local router = new_router()
    fail_booked = 1
    send(router, "guest_booked", 0)
    assert.are.equal(200, send(router, "guest_cancelled", 60).status)        -- waits
    assert.are.equal(200, send(router, "guest_rescheduled", 30).status)      -- waits
    now = now + 20
    router:run_due()
    assert.are.same({ "guest_booked", "guest_rescheduled", "guest_cancelled" }, calls)
  end)

  it("runs an earlier change that comes after a later one ran, marked out of order", function()
    local router = new_router()
    assert.are.equal(200, send(router, "guest_cancelled", 30).status)
    assert.are.equal(200, send(router, "guest_booked", 0).status)
    assert.are.same({ "guest_cancelled", "guest_booked (out of order)" }, calls)
  end)

  it("lets the later changes go when an earlier one ends dead, and says so", function()
    local router, lines = new_router({ retry_delays = { 10 } })
    fail_booked = 5
    send(router, "guest_booked", 0)
    send(router, "guest_cancelled", 30)
    now = now + 20
    router:run_due()   -- the booking's last attempt fails: dead; the cancellation runs
    assert.are.same({ "guest_cancelled" }, calls)
    assert.truthy(table.concat(lines, "\n"):find("no longer holds back the 1 later", 1, true))
  end)

  it("keeps the order on the memory journal too, and not at all with ordered = false", function()
    local router = new_router({ journal = false })
    fail_booked = 1
    send(router, "guest_booked", 0)
    send(router, "guest_cancelled", 30)
    assert.are.same({}, calls)
    now = now + 20
    router:run_due()
    assert.are.same({ "guest_booked", "guest_cancelled" }, calls)

    calls, fail_booked = {}, 1
    local unordered = new_router({ ordered = false, journal = journal.sqlite({ dir = dir .. "/j2" }) })
    send(unordered, "guest_booked", 0)
    assert.are.equal(200, send(unordered, "guest_cancelled", 30).status)
    assert.are.same({ "guest_cancelled" }, calls)
  end)
end)
