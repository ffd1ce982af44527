-- The typed tables' helpers (jicoo.webhook.payload.types), on the fixtures.
local webhook = require "jicoo.webhook"
local support = require "support"

local function fixture(name, opts)
  return assert(webhook.parse(support.read(support.fixtures .. "/" .. name), opts))
end

describe("Event", function()
  local cases = {
    { "valid/strict_guest_booked_full.json", "booked", "guest" },
    { "valid/guest_cancelled.json", "cancelled", "guest" },
    { "valid/host_cancelled.json", "cancelled", "host" },
    { "lenient/portal_guest_rescheduled.json", "rescheduled", "guest" },
    { "lenient/portal_host_rescheduled.json", "rescheduled", "host" },
    { "lenient/drift.json", nil, nil },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. " is " .. tostring(case[2]) .. " by " .. tostring(case[3]), function()
      local ev = fixture(case[1])
      assert.are.equal(case[2], ev:kind())
      assert.are.equal(case[3], ev:actor())
      assert.are.equal(case[2] ~= nil, ev:is_known())
    end)
  end

  it("lists the known events", function()
    assert.are.same({ "guest_booked", "guest_rescheduled", "host_rescheduled", "guest_cancelled",
      "host_cancelled" }, webhook.EVENTS)
  end)

  it("has an idempotency key of event, booking and envelope time", function()
    local ev = fixture("valid/guest_cancelled.json")
    assert.are.equal("guest_cancelled/ACDADADASS/2022-08-30T09:12:44.120Z", ev:key())
    assert.are.equal(webhook.time("2022-08-30T09:12:44.120Z"), ev:created_at())
  end)

  it("escapes '/' and '%' inside the key's parts", function()
    local body = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json")
      :gsub('"uid":"bk_7Hq2"', '"uid":"a/b%%c"')
    local ev = assert(webhook.parse(body))
    assert.are.equal("guest_booked/a%2Fb%25c/2024-03-01T10:00:05+09:00", ev:key())
  end)

  it("keys two retries alike and two changes apart", function()
    local a = fixture("valid/guest_cancelled.json")
    local b = fixture("valid/guest_cancelled.json")
    local c = fixture("valid/host_cancelled.json")
    assert.are.equal(a:key(), b:key())
    assert.are_not.equal(a:key(), c:key())
  end)
end)

describe("Booking", function()
  it("gives start, end and duration in epoch seconds", function()
    local b = fixture("valid/tokyo_no_utm_compact.json").object
    assert.are.equal(1709600400, b:starts_at())   -- date -u -d 2024-03-05T01:00:00Z +%s
    assert.are.equal(1709604000, b:ends_at())
    assert.are.equal(3600, b:duration())
    assert.is_false(b:is_cancelled())
    assert.is_nil(b:cancelled_at())
  end)

  it("knows a cancellation", function()
    local b = fixture("valid/host_cancelled.json").object
    assert.is_true(b:is_cancelled())
    assert.are.equal(1661850763.987, b:cancelled_at())  -- date -u -d 2022-08-30T09:12:43.987Z +%s.%N
  end)

  it("finds an answer by its question", function()
    local b = fixture("valid/guest_cancelled.json").object
    assert.are.same({ "SNS", "DM" }, b:answer("How did you find out?"))
    assert.is_nil(b:answer("Company"))
    assert.are.equal("SNS / DM", b.answers[1]:text(" / "))
    assert.are.equal("SNS, DM", b.answers[1]:text())
  end)
end)

describe("Contact and Tracking", function()
  it("show a contact", function()
    assert.are.equal("山田 太郎 <taro.yamada@example.jp>",
      fixture("valid/tokyo_no_utm_compact.json").object.contact:display())
  end)

  it("tell whether a visit had UTM parameters", function()
    assert.is_false(fixture("valid/tokyo_no_utm_compact.json").object.tracking:has_utm())
    assert.is_false(fixture("valid/tokyo_no_utm_compact.json", { null = webhook.null }).object.tracking:has_utm())
    assert.is_true(fixture("valid/guest_cancelled.json").object.tracking:has_utm())
  end)
end)

-- A table parsed by code that loaded only the core has its methods all the same: the core's
-- stand-in __index loads them on the first key a table misses.
describe("typed tables parsed through the core alone", function()
  it("have their methods", function()
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local out, ok = support.run(interpreter .. " -e " .. support.quote(
      "local core = require('jicoo.webhook.core')"
      .. " local f = assert(io.open(" .. string.format("%q", support.fixtures
        .. "/valid/guest_cancelled.json") .. ")) local body = f:read('*a') f:close()"
      .. " local ev = assert(core.parse(body))"
      .. " io.write(tostring(ev:kind()), ' ', tostring(ev.object:duration()), ' ',"
      .. " tostring(package.loaded['jicoo.webhook.payload'] ~= nil))") .. " 2>&1")
    assert(ok, out)
    assert.are.equal("cancelled 3600 false", out)
  end)
end)
