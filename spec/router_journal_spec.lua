-- The router on a journal: a delivery timed to the millisecond by the system's clock; and on
-- the SQLite journal (a new router for each restart) a failing handler retried on its schedule,
-- a dead letter rearmed by an operator, a dead worker's delivery taken over once its lease runs
-- out, a broken script's deliveries run once it is fixed, a journal that cannot write or that
-- raises, copies of a failed delivery, and options that cannot work together.
local webhook = require "jicoo.webhook"
local store = require "jicoo.webhook.store"
local support = require "support"
local shared = require "router_shared"

local NOW, new_router, decode, BOOKED = shared.NOW, shared.new_router, shared.decode, shared.BOOKED

describe("router: the clock", function()
  -- Leases and retries are timed to the millisecond: a 5 s lease lasts 5 s, not 4 to 5.
  it("times a delivery to the millisecond without a clock of its own", function()
    local fractional = false
    for i = 1, 5 do
      local j = require("jicoo.webhook.journal").memory()
      local r = webhook.router({ verify = false, journal = j, lease = 5, log = function() end })
      r:on("*", function() end)
      local delivery = assert(r:accept((BOOKED:gsub("ACDADADASS", "clock" .. i))))
      local record = delivery.record
      assert.are.equal(5, record.lease_until - record.received_at)
      fractional = fractional or record.received_at ~= math.floor(record.received_at)
      assert.truthy(math.abs(record.received_at - os.time()) < 2)
    end
    assert.is_true(fractional)
  end)
end)

describe("router: the journal", function()
  local journal = require "jicoo.webhook.journal"
  local dir, clock

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(support.run("mkdir -p " .. support.quote(dir)))
    clock = NOW
  end)

  after_each(function()
    support.run("rm -rf " .. support.quote(dir))
  end)

  local KEY = "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z"

  -- A router on the SQLite journal in dir (each call: a new router, as after a restart), its
  -- clock the spec's, retries 10 s apart (jittered to 7.5-12.5 s).
  local function durable_router(opts)
    opts = opts or {}
    opts.journal = opts.journal or journal.sqlite({ dir = dir .. "/journal" })
    opts.retry_delays = opts.retry_delays or { 10, 10 }
    opts.lease = opts.lease or 60
    opts.now = function() return clock end
    opts.verify = false
    return new_router(opts)
  end

  -- Handlers that count their runs; `failing` fails while fail_left[name] > 0.
  local function counted(r, names, fail_left)
    local runs = {}
    for _, name in ipairs(names) do
      runs[name] = 0
      r:on("guest_booked", function()
        runs[name] = runs[name] + 1
        if (fail_left[name] or 0) > 0 then
          fail_left[name] = fail_left[name] - 1
          error(name .. " is down")
        end
      end)
    end
    return runs
  end

  it("retries a failing handler on its schedule until it succeeds, running the others once", function()
    local r = durable_router()
    local runs = counted(r, { "ledger", "notify", "crm" }, { notify = 2 })
    local res = r:handle(BOOKED)
    assert.are.equal(500, res.status, res.body .. (res.errors[1] and res.errors[1].message or ""))
    assert.are.same({ ledger = 1, notify = 1, crm = 1 }, runs)
    local record = r.journal:get(KEY)
    assert.are.equal("failed", record.state)
    assert.are.same({ { handler = res.handlers[2].handler, message = res.errors[1].message } },
      record.errors)
    assert.truthy(record.next_at >= NOW + 7.5 and record.next_at <= NOW + 12.5, record.next_at)

    assert.are.equal(0, (r:run_due()))          -- not due yet
    clock = NOW + 13
    local count, results = r:run_due()
    assert.are.equal(1, count)
    assert.are.equal(500, results[1].status)
    assert.are.same({ ledger = 1, notify = 2, crm = 1 }, runs)
    clock = NOW + 26
    count, results = r:run_due()
    assert.are.equal(1, count)
    assert.are.equal(200, results[1].status)
    assert.are.same({ ledger = 1, notify = 3, crm = 1 }, runs)
    assert.are.equal("done", r.journal:get(KEY).state)
    assert.are.equal(3, r.journal:get(KEY).attempts)
    clock = NOW + 1000
    assert.are.equal(0, (r:run_due()))
    assert.are.equal("duplicate", decode(r:handle(BOOKED)).result)
  end)

  it("ends a delivery that keeps failing as a dead letter, logged once, rearmed by an operator", function()
    local r, lines = durable_router()
    local fail_left = { crm = 100 }
    local runs = counted(r, { "ledger", "crm" }, fail_left)
    r:handle(BOOKED)
    for i = 1, 5 do
      clock = NOW + 13 * i
      r:run_due()
    end
    assert.are.same({ ledger = 1, crm = 3 }, runs)   -- three attempts: the first and two retries
    local record = r.journal:get(KEY)
    assert.are.equal("dead", record.state)
    assert.truthy(record.errors[1].message:find("crm is down", 1, true))
    local dead_lines = {}
    for _, line in ipairs(lines) do
      if line:find("dead letter", 1, true) then
        dead_lines[#dead_lines + 1] = line
      end
    end
    assert.are.equal(1, #dead_lines)
    assert.truthy(dead_lines[1]:find("^error: dead letter " .. KEY:gsub("%p", "%%%0") .. " after 3"))
    assert.are.equal("duplicate", decode(r:handle(BOOKED)).result)

    -- The service is back; an operator rearms the delivery: it runs once more, the crm alone,
    -- as the fourth attempt.
    fail_left.crm = 0
    assert.is_truthy(r.journal:rearm(KEY, clock))
    assert.are.equal(1, (r:run_due()))
    assert.are.same({ ledger = 1, crm = 4 }, runs)
    assert.are.equal("done", r.journal:get(KEY).state)
    assert.are.equal(4, r.journal:get(KEY).attempts)
  end)

  -- The attempts go on counting after an operator's retry (ctx.attempt with them); what
  -- restarts is the budget: as many attempts again as the router allows, then dead again.
  it("keeps counting the attempts after a rearm, with a new budget of them", function()
    local r, lines = durable_router()
    local seen = {}
    r:on("guest_booked", function(_, ctx)
      seen[#seen + 1] = ctx.attempt
      error("crm is down")
    end)
    r:handle(BOOKED)
    for i = 1, 4 do
      clock = NOW + 13 * i
      r:run_due()
    end
    assert.are.same({ 1, 2, 3 }, seen)
    assert.are.equal("dead", r.journal:get(KEY).state)
    assert.truthy(r.journal:rearm(KEY, clock))
    for i = 5, 9 do
      clock = NOW + 13 * i
      r:run_due()
    end
    assert.are.same({ 1, 2, 3, 4, 5, 6 }, seen)
    local record = r.journal:get(KEY)
    assert.are.equal("dead", record.state)
    assert.are.equal(6, record.attempts)
    assert.are.equal(3, record.budget_from)
    local last = lines[#lines]
    for _, line in ipairs(lines) do
      if line:find("dead letter", 1, true) then
        last = line
      end
    end
    assert.truthy(last:find("after 6 attempt(s)", 1, true), last)
  end)

  it("takes over a delivery whose worker died mid-handler once its lease runs out, and does"
      .. " not run again a handler that had succeeded", function()
    local first = durable_router()
    local runs = { ledger = 0, slow = 0 }
    first:on("guest_booked", function() runs.ledger = runs.ledger + 1 end)
    first:on("guest_booked", function() runs.slow = runs.slow + 1 end)
    -- The worker dies inside the second handler: accept, the first handler and its record, and
    -- nothing after, as a kill -9 would leave it.
    local delivery = assert(first:accept(BOOKED, {}))
    local ledger_label = first.routes[1].label
    assert.is_true(first.journal:update(KEY, delivery.record.token,
      { handlers = { [ledger_label] = true } }, clock))
    runs.ledger = 1

    -- A copy from the sender meanwhile: the file journal will see it through, so 200.
    local copy = first:handle(BOOKED)
    assert.are.equal(200, copy.status)
    assert.are.same({ ok = true, result = "duplicate", state = "running", event = "guest_booked" },
      decode(copy))

    local second = durable_router()   -- the restarted worker, same handlers (same labels)
    second.routes = first.routes
    assert.are.equal(0, (second:run_due()))   -- the lease still holds
    clock = NOW + 60
    local count, results = second:run_due()
    assert.are.equal(1, count)
    assert.are.equal(200, results[1].status)
    assert.are.same({ ledger = 1, slow = 1 }, runs)
    assert.are.equal(2, second.journal:get(KEY).attempts)
  end)

  it("journals the deliveries of a broken script as failed, and runs them once it is fixed", function()
    local scripts = dir .. "/scripts"
    assert(support.run("mkdir -p " .. support.quote(scripts)))
    support.write(scripts .. "/guest_booked.lua", "return function( end\n")
    support.write(scripts .. "/any.lua",
      "return function(_, ctx) ctx.config.calls[#ctx.config.calls + 1] = 'any' end\n")
    local calls = {}
    local broken = durable_router({ config = { calls = calls } })
    assert.is_nil((broken:load(scripts)))
    local res = broken:handle(BOOKED)
    assert.are.equal(500, res.status)
    assert.truthy(res.errors[1].message:find("the script did not load", 1, true))
    assert.are.same({ "any" }, calls)

    -- Fixed, and reloaded: a new router on the same journal.
    support.write(scripts .. "/guest_booked.lua",
      "return function(_, ctx) ctx.config.calls[#ctx.config.calls + 1] = 'booked' end\n")
    local fixed = durable_router({ config = { calls = calls } })
    assert.are.equal(2, (fixed:load(scripts)))
    clock = NOW + 13
    assert.are.equal(1, (fixed:run_due()))
    assert.are.same({ "any", "booked" }, calls)
    assert.are.equal("done", fixed.journal:get(KEY).state)
  end)

  it("answers 500 and claims nothing when the journal cannot write", function()
    support.write(dir .. "/file", "")
    local r = durable_router({ journal = journal.sqlite({ dir = dir .. "/file/journal" }) })
    local runs = counted(r, { "ledger" }, {})
    local res = r:handle(BOOKED)
    assert.are.equal(500, res.status)
    assert.are.equal("store_failed", decode(res).error)
    assert.truthy(res.errors[1].message:find("Not a directory", 1, true))
    assert.are.same({ ledger = 0 }, runs)
  end)

  it("answers a copy of a failed delivery 200 when the journal is durable, and leaves the retry"
      .. " to its schedule", function()
    local r = durable_router()
    local runs = counted(r, { "crm" }, { crm = 1 })
    assert.are.equal(500, r:handle(BOOKED).status)
    local copy = r:handle(BOOKED)
    assert.are.equal(200, copy.status)
    assert.are.equal("failed", decode(copy).state)
    assert.are.same({ crm = 1 }, runs)
  end)

  it("lets a copy take a failed delivery at once when the journal is not durable", function()
    local r = new_router({ verify = false, journal = journal.memory() })
    local runs = counted(r, { "ledger", "crm" }, { crm = 1 })
    assert.are.equal(500, r:handle(BOOKED).status)
    assert.are.equal(200, r:handle(BOOKED).status)
    assert.are.same({ ledger = 1, crm = 2 }, runs)
  end)

  it("counts a journal of the user's that raises as one that failed: 500, nothing run", function()
    local raising = journal.memory()
    local user_journal = setmetatable({ durable = true }, { __index = function(_, name)
      if name == "acquire" then
        return function() error("disk on fire") end
      end
      local method = raising[name]
      return method and function(_, ...) return method(raising, ...) end
    end })
    local r = new_router({ verify = false, journal = user_journal })
    local runs = counted(r, { "ledger" }, {})
    local res = r:handle(BOOKED)
    assert.are.equal(500, res.status)
    assert.are.equal("store_failed", decode(res).error)
    assert.truthy(res.errors[1].message:find("disk on fire", 1, true))
    assert.are.same({ ledger = 0 }, runs)
  end)

  it("refuses options that cannot work together", function()
    local j = journal.memory()
    assert.has_error(function() webhook.router({ verify = false, journal = j, store = store.memory() }) end)
    assert.has_error(function() webhook.router({ verify = false, journal = j, ttl = 10 }) end)
    assert.has_error(function() webhook.router({ verify = false, journal = {} }) end)
    assert.has_error(function() webhook.router({ verify = false, lease = 0 }) end)
    assert.has_error(function() webhook.router({ verify = false, retry_delays = { -1 } }) end)
  end)
end)
