-- router:deliver (router/reconcile.lua): a delivery this program built, past the signature check
-- but through the parse, the journal's claim and the handlers; its own key, which no signed
-- delivery can make; ctx.source "reconcile" on it and on the scheduler's retries of it,
-- "webhook" on everything received.
local webhook = require "jicoo.webhook"
local journal = require "jicoo.webhook.journal"
local reconcile = require "jicoo.webhook.router.reconcile"
local shared = require "router_shared"

local NOW = shared.NOW

local function body_of(event, uid, created_at)
  local json = require "jicoo.webhook.payload.json"
  return json.encode({ event = event, createdAt = created_at or "2026-03-01T00:00:00.000Z",
    object = {
      uid = uid, eventTypeUid = "et_1", status = "open", timeZone = "Asia/Tokyo",
      createdAt = "2026-03-01T00:00:00.000Z", updatedAt = "2026-03-01T00:00:00.000Z",
      startedAt = "2026-03-07T10:00:00.000Z", endedAt = "2026-03-07T10:30:00.000Z",
      contact = { name = "Hanako Sato", email = "hanako.sato@example.jp" },
      answers = json.EMPTY_ARRAY, tracking = {},
    } })
end

describe("router:deliver", function()
  local router, seen, now

  before_each(function()
    now = NOW
    seen = {}
    router = shared.new_router({ journal = journal.memory(), now = function() return now end })
    router:on("*", function(ev, ctx)
      seen[#seen + 1] = ev.event .. " " .. ev.object.uid .. " " .. ctx.source .. " " .. ctx.key
    end)
  end)

  it("runs the handlers once, with ctx.source 'reconcile' and a key of its own", function()
    local body = body_of("guest_booked", "bk_1")
    local res = router:deliver(body)
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("reconcile/guest_booked/bk_1/2026-03-01T00:00:00.000Z", res.key)
    assert.are.same({ "guest_booked bk_1 reconcile reconcile/guest_booked/bk_1/2026-03-01T00:00:00.000Z" }, seen)
    local again = router:deliver(body)
    assert.are.equal(200, again.status)
    assert.is_true(again.duplicate)
    assert.are.equal(1, #seen)
  end)

  it("never shares a record with the same delivery received and signed", function()
    local body = body_of("guest_booked", "bk_2")
    assert.are.equal(200, router:handle(body, shared.signed(body)).status)
    assert.are.equal(200, router:deliver(body).status)
    assert.are.same({
      "guest_booked bk_2 webhook guest_booked/bk_2/2026-03-01T00:00:00.000Z",
      "guest_booked bk_2 reconcile reconcile/guest_booked/bk_2/2026-03-01T00:00:00.000Z",
    }, seen)
  end)

  it("cannot be reached by a signed delivery: one named 'reconcile' keeps a two-part key", function()
    local body = body_of("reconcile", "guest_booked")
    local res = router:handle(body, shared.signed(body))
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("reconcile/guest_booked/2026-03-01T00:00:00.000Z", res.key)
    assert.is_false(reconcile.is_key(res.key))
    assert.is_true(reconcile.is_key("reconcile/guest_booked/bk_1/2026-03-01T00:00:00.000Z"))
    assert.is_false(reconcile.is_key("reconcile%2Fguest_booked/bk_1/2026-03-01T00:00:00.000Z"))
    assert.are.equal("webhook", seen[1]:match(" (%a+) reconcile/"))
  end)

  it("checks what it is given as a received delivery is checked: size, parse", function()
    local res = router:deliver('{"event":"guest_booked"}')
    assert.are.equal(400, res.status)
    assert.truthy(res.body:find('"missing"', 1, true), res.body)
    local small = shared.new_router({ journal = journal.memory(), max_size = 64 })
    assert.are.equal(413, small:deliver(body_of("guest_booked", "bk_3")).status)
    assert.has_error(function() router:deliver(nil) end,
      "router:deliver: body must be a string, got nil")
    assert.are.same({}, seen)
  end)

  it("a failure is retried by the scheduler, still as 'reconcile'", function()
    local fail = true
    local sources = {}
    local r = shared.new_router({ journal = journal.memory(), now = function() return now end })
    r:on("guest_cancelled", function(_, ctx)
      sources[#sources + 1] = ctx.source .. " " .. ctx.attempt
      if fail then
        error("not yet")
      end
    end)
    assert.are.equal(500, r:deliver(body_of("guest_cancelled", "bk_4")).status)
    fail = false
    now = now + 3600
    local ran = r:run_due()
    assert.are.equal(1, ran)
    assert.are.same({ "reconcile 1", "reconcile 2" }, sources)
  end)

  it("ctx.source is 'webhook' for every received delivery", function()
    local r = webhook.router({ verify = false })
    local source
    r:on("*", function(_, ctx) source = ctx.source end)
    assert.are.equal(200, r:handle(body_of("guest_booked", "bk_5"), {}).status)
    assert.are.equal("webhook", source)
  end)
end)
