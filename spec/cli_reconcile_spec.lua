-- jicoo-webhook reconcile, as a subprocess, against the stand-in Jicoo API (spec/standin.lua,
-- over TLS in a real nginx) and a SQLite journal this spec fills: it finds exactly the booking
-- changes the stand-in has and the journal lacks; --deliver runs the handlers once each with
-- ctx.source "reconcile", and a second run finds and delivers nothing; API failures are a clear
-- error and exit 1; what it builds passes the strict level.
local support = require "support"

-- Without servers: --since read, and the guess of a reschedule.
describe("jicoo-webhook reconcile's reading of --since and of a booking", function()
  local since_time = require("jicoo.webhook.cli.reconcile").since_time
  local NOW = 1772409600   -- 2026-03-02T00:00:00Z
  for _, case in ipairs({
    { "45s", NOW - 45 }, { "30m", NOW - 1800 }, { "2h", NOW - 7200 }, { "3d", NOW - 3 * 86400 },
    { "1w", NOW - 7 * 86400 }, { "2026-03-01", NOW - 86400 },
    { "2026-03-01T09:00:00+09:00", NOW - 86400 }, { "2026-03-01T12:00:00.5Z", NOW - 43199.5 },
    { "2h30m", NOW - 9000 }, { "-2h" }, { "2026-03-01 00:00:00Z" }, { "yesterday" }, { "2026-03-03" },
  }) do
    it(case[1], function()
      local t, msg = since_time(case[1], NOW)
      assert.are.equal(case[2], t, msg)
      if not case[2] then
        assert.truthy(msg:find("--since", 1, true))
      end
    end)
  end

  local rescheduled = require("jicoo.api").GUESSES.rescheduled
  for _, case in ipairs({
    { "open", "2026-03-01T00:00:00.000Z", "2026-03-01T00:00:00.000Z", false },
    { "open", "2026-03-01T00:00:00Z", "2026-03-01T09:00:00+09:00", false },
    { "open", "2026-03-01T00:00:00.000Z", "2026-03-01T00:00:30.000Z", false },
    { "open", "2026-03-01T00:00:00.000Z", "2026-03-01T02:00:00.000Z", true },
    { "cancel", "2026-03-01T00:00:00.000Z", "2026-03-01T02:00:00.000Z", false },
    { "open", "2026-03-01T00:00:00.000Z", "not a time", false },
    { "open", 1772323200, "2026-03-01T02:00:00.000Z", false },
  }) do
    it("a reschedule: " .. table.concat({ case[1], tostring(case[2]), case[3] }, " "), function()
      assert.are.equal(case[4], rescheduled({ status = case[1], createdAt = case[2],
        updatedAt = case[3] }))
    end)
  end
end)

local missing = support.missing_http_client()
if not pcall(require, "cjson") then missing[#missing + 1] = "lua-cjson" end
if #missing > 0 then
  describe("jicoo-webhook reconcile", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local cjson = require "cjson"
local api = require "jicoo.api"
local runner = require "cli_runner"
local servers = require "servers"
local webhook = require "jicoo.webhook"
local json = require "jicoo.webhook.payload.json"

local q = support.quote

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S.000Z", t)
end

local NOW = os.time()
local H, D = 3600, 86400
local START = iso(NOW + 2 * D)   -- every meeting is ahead: the list's startedAt filter keeps it

-- The stand-in's bookings: times relative to now, --since 2h.
local BOOKINGS = {
  { uid = "bk_r_new", status = "open", createdAt = iso(NOW - 1800), updatedAt = iso(NOW - 1800) },
  { uid = "bk_r_seen", status = "open", createdAt = iso(NOW - 2400), updatedAt = iso(NOW - 2400) },
  { uid = "bk_r_cancel", status = "cancel", cancelledBy = "host", cancelReason = "Double booked",
    createdAt = iso(NOW - 3 * D), updatedAt = iso(NOW - 1200), cancelledAt = iso(NOW - 1200) },
  { uid = "bk_r_cancel_seen", status = "cancel", cancelledBy = "guest",
    createdAt = iso(NOW - 10 * D), updatedAt = iso(NOW - 3000), cancelledAt = iso(NOW - 3000) },
  { uid = "bk_r_moved", status = "open", createdAt = iso(NOW - 5 * D), updatedAt = iso(NOW - 600) },
  { uid = "bk_r_old", status = "open", createdAt = iso(NOW - 10 * D), updatedAt = iso(NOW - 9 * D) },
  { uid = "bk_nocontacts", status = "open", createdAt = iso(NOW - 900), updatedAt = iso(NOW - 900) },
  { uid = "bk_r_both", status = "cancel", cancelledBy = "guest", createdAt = iso(NOW - H),
    updatedAt = iso(NOW - 300), cancelledAt = iso(NOW - 300) },
}
for _, b in ipairs(BOOKINGS) do
  b.startedAt, b.endedAt = START, iso(NOW + 2 * D + 1800)
end

-- What the journal lacks, oldest first.
local EXPECTED = {
  "bk_r_both guest_booked", "bk_r_new guest_booked", "bk_r_cancel host_cancelled",
  "bk_nocontacts guest_booked", "bk_r_moved guest_rescheduled", "bk_r_both guest_cancelled",
}

-- A delivery of booking b as the receiver got it (the stand-in's template fills what b lacks).
local function delivery(event, b, created_at)
  local booking = { eventTypeId = "et_intro30", timeZone = "Asia/Tokyo" }
  for name, value in pairs(b) do
    booking[name] = value
  end
  return json.encode({ event = event, createdAt = created_at or b.updatedAt,
    object = api.GUESSES.webhook_object(booking, { name = "Hanako Sato", email = "h@example.jp" }) })
end

describe("jicoo-webhook reconcile", function()
  local standin, dir, journal_dir, handlers, out_file

  setup(function()
    dir = servers.temp_dir()
    standin = servers.standin(dir)
  end)

  teardown(function()
    if standin then
      standin:stop()
    end
    servers.remove_dir(dir)
  end)

  before_each(function()
    standin:reset()
    standin:set_bookings(BOOKINGS)
    journal_dir = runner.temp_dir()
    handlers = runner.temp_dir()
    out_file = handlers .. "/ran.txt"
    support.write(handlers .. "/any.lua", [[
      return function(ev, ctx)
        local file = assert(io.open(ctx.config.out, "a"))
        file:write(ev.event, " ", ev.object.uid, " ", ctx.source, " ",
          tostring(ev.object.contact.name), " ", ev.object.status, "\n")
        file:close()
      end]])
    -- What the receiver did handle: signed deliveries of two bookings, and a reschedule of
    -- bk_r_moved received two days before its last update (an earlier move).
    local j = require("jicoo.webhook.journal").sqlite({ dir = journal_dir })
    local function receive(now, body)
      local router = webhook.router({ verify = false, journal = j, now = now,
        log = function() end })
      router:on("*", function() end)
      local res = router:handle(body, {})
      assert.are.equal(200, res.status, res.body)
    end
    local by_uid = {}
    for _, b in ipairs(BOOKINGS) do
      by_uid[b.uid] = b
    end
    receive(NOW - 2400, delivery("guest_booked", by_uid.bk_r_seen))
    receive(NOW - 3000, delivery("guest_cancelled", by_uid.bk_r_cancel_seen))
    receive(NOW - 2 * D, delivery("guest_rescheduled", by_uid.bk_r_moved, iso(NOW - 2 * D)))
  end)

  after_each(function()
    runner.remove_dir(journal_dir)
    runner.remove_dir(handlers)
  end)

  local function reconcile(extra, env)
    return runner.run("reconcile --since 2h --journal " .. q(journal_dir) .. " --api-url "
      .. q(standin.api_url) .. " --ca-file " .. q(standin.ca_file) .. " " .. (extra or ""),
      env or ("JICOO_API_KEY=" .. q(standin.key)))
  end

  local function lines_of(text)
    local lines = {}
    for line in text:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    return lines
  end

  local function ran()
    local file = io.open(out_file, "rb")
    if not file then
      return {}
    end
    local text = file:read("*a")
    file:close()
    return lines_of(text)
  end

  it("lists exactly the changes the journal lacks, then the count; runs nothing", function()
    local code, out, err = reconcile()
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(#EXPECTED + 1, #lines, out)
    for i, expected in ipairs(EXPECTED) do
      local uid, event = expected:match("^(%S+) (%S+)$")
      assert.are.equal(uid .. " missing " .. event, lines[i]:match("^(%S+ missing %S+)"), lines[i])
    end
    assert.truthy(lines[2]:find(" created=" .. BOOKINGS[1].createdAt, 1, true), lines[2])
    assert.truthy(lines[#lines]:find("^6 missing, of 8 bookings listed; changes since %d%d%d%d%-"), lines[#lines])
    assert.are.same({}, ran())
    -- the list asked for meetings from --since on (the guessed filter)
    local requests = standin:recorded("requests")
    assert.are.equal(1, #requests)
    assert.truthy(requests[1]:find("^GET /v1/bookings%?page=1&perPage=100&startedAt=%d"), requests[1])
  end)

  it("--json: one object a line, the count last", function()
    local code, out, err = reconcile("--json")
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(#EXPECTED + 1, #lines)
    for i, expected in ipairs(EXPECTED) do
      local item = cjson.decode(lines[i])
      assert.are.equal(expected, item.uid .. " " .. item.event)
    end
    local cancel = cjson.decode(lines[3])
    assert.are.equal(BOOKINGS[3].cancelledAt, cancel.at)
    assert.are.equal("cancel", cancel.status)
    local count = cjson.decode(lines[#lines])
    assert.are.equal(6, count.missing)
    assert.are.equal(8, count.bookings)
  end)

  it("--deliver runs each once as 'reconcile'; a second run finds and delivers nothing", function()
    local code, out, err = reconcile("--deliver --handlers " .. q(handlers) .. " --set out=" .. q(out_file))
    assert.are.equal(0, code, out .. err)
    local expected = {}
    for i, item in ipairs(EXPECTED) do
      local uid, event = item:match("^(%S+) (%S+)$")
      local contact = uid == "bk_nocontacts" and "nil" or "Hanako Sato"
      local status = (uid == "bk_r_cancel" or uid == "bk_r_both") and "cancel" or "open"
      expected[i] = event .. " " .. uid .. " reconcile " .. contact .. " " .. status
    end
    assert.are.same(expected, ran())
    assert.truthy(out:find("6 missing, of 8 bookings listed; changes since [^;]+; 6 delivered\n$"), out)

    code, out, err = reconcile("--deliver --handlers " .. q(handlers) .. " --set out=" .. q(out_file))
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^0 missing, of 8 bookings listed; changes since [^;]+; 0 delivered\n$"), out)
    assert.are.equal(#EXPECTED, #ran())

    -- the journal holds them under their own keys, done
    local _, list = runner.run("deliveries list --state done --journal " .. q(journal_dir))
    local keys = 0
    for key in list:gmatch("done (reconcile/%S+)") do
      keys = keys + 1
      assert.truthy(key:find("^reconcile/[%w_]+/[%w_]+/%d%d%d%d%-%d%d%-%d%dT"), key)
    end
    assert.are.equal(6, keys, list)
  end)

  it("an API failure is a clear error and exit 1, with no count line", function()
    local code, out, err = reconcile(nil, "JICOO_API_KEY=sk_live_wrong_key_0000")
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("jicoo-webhook reconcile: jicoo api: GET /bookings: 401", 1, true), err)
    assert.falsy(err:find("sk_live_wrong_key_0000", 1, true))

    code, out, err = runner.run("reconcile --since 2h --journal " .. q(journal_dir) .. " --api-url "
      .. q(standin.api_url:gsub("/v1$", "/v9")) .. " --ca-file " .. q(standin.ca_file),
      "JICOO_API_KEY=" .. q(standin.key))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("^jicoo%-webhook reconcile: jicoo api: GET /bookings: 40%d "), err)

    code, out, err = reconcile("--ca-file " .. q(standin.other_ca_file))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("TLS", 1, true), err)
    assert.are.same({}, ran())
  end)

  it("a usage error for a --since it cannot read, no key, or --deliver without handlers", function()
    for _, case in ipairs({
      { "reconcile --since yesterday --journal " .. q(journal_dir), "--since takes an ISO 8601 time" },
      { "reconcile --since 2099-01-01 --journal " .. q(journal_dir), "is in the future" },
      { "reconcile --since 2h --journal " .. q(journal_dir), "no Jicoo API key", "JICOO_API_KEY=" },
      { "reconcile --since 2h --deliver --journal " .. q(journal_dir), "--handlers DIR" },
      { "reconcile --since 5d --deliver --handlers " .. q(handlers) .. " --journal " .. q(journal_dir),
        "how long the journal keeps" },
    }) do
      local code, _, err = runner.run(case[1], case[3] or ("JICOO_API_KEY=" .. q(standin.key)))
      assert.are.equal(2, code, case[1])
      assert.truthy(err:find(case[2], 1, true), err)
    end
  end)

  it("builds deliveries from the API's bookings that pass the strict level", function()
    local client = api.client({ key = standin.key, base_url = standin.api_url,
      ca_file = standin.ca_file })
    for _, uid in ipairs({ "bk_8Yt2", "bk_r_cancel" }) do
      local booking = assert(client:booking(uid))
      local contacts = assert(client:booking_contacts(uid))
      local body = json.encode({ event = "guest_booked", createdAt = booking.createdAt,
        object = api.GUESSES.webhook_object(booking, contacts[1]) })
      local ev, msg = webhook.parse(body, { level = "strict" })
      assert.truthy(ev, msg)
      assert.are.equal(uid, ev.object.uid)
      assert.are.equal("et_intro30", ev.object.eventTypeUid)
      assert.are.equal("hanako.sato@example.jp", ev.object.contact.email)
      assert.are.same({ "Pricing" }, ev.object.answers[1].content)
    end
    local lonely = api.GUESSES.webhook_object(assert(client:booking("bk_nocontacts")), nil)
    assert.truthy(webhook.parse(json.encode({ event = "guest_booked",
      createdAt = "2026-03-01T00:00:00Z", object = lonely }), { level = "strict" }))
  end)
end)
