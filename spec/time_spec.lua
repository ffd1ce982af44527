-- webhook.time: RFC 3339 date-times to epoch seconds, checked against GNU date.
local webhook = require "jicoo.webhook"
local support = require "support"

-- The epoch seconds GNU date reads from s: an implementation independent of ours.
local function gnu_date(s)
  local out, ok = support.run("date -u -d " .. support.quote(s) .. " +%s.%N")
  assert(ok, "date could not read " .. s)
  return tonumber(out)
end

local valid = {
  "1970-01-01T00:00:00Z",
  "2024-03-01T10:00:05+09:00",
  "2024-03-01T10:00:04.5+09:00",
  "2022-09-01T17:00:00.000Z",
  "2000-02-29T23:59:59Z",         -- a leap year divisible by 400
  "2024-02-29T00:00:00-05:00",    -- an ordinary leap year
  "2023-12-31T23:59:59.999Z",
  "1969-12-31T23:59:59Z",         -- before the epoch
  "0001-01-01T00:00:00Z",
  "9999-12-31T23:59:59-23:59",
  "2022-08-30T09:12:43.987z",     -- lower-case z
  "2022-08-30t09:12:43Z",         -- lower-case t
  "2022-08-30T09:12:43.123456789+05:30",
  "2021-06-15T12:00:00-00:00",
}

local invalid = {
  { "2022-02-30T10:00:00Z", "day" },
  { "2023-02-29T10:00:00Z", "day" },   -- not a leap year
  { "1900-02-29T10:00:00Z", "day" },   -- divisible by 100, not by 400
  { "2022-04-31T10:00:00Z", "day" },
  { "2022-00-10T10:00:00Z", "month" },
  { "2022-13-10T10:00:00Z", "month" },
  { "2022-01-00T10:00:00Z", "day" },
  { "2022-01-01T24:00:00Z", "hour" },
  { "2022-01-01T23:60:00Z", "minute" },
  { "2022-01-01T23:59:61Z", "second" },
  { "2022-01-01T10:00:00", "no time zone after the time" },
  { "2022-01-01T10:00:00.000", "no time zone after the time" },
  { "2022-01-01 10:00:00Z", "'T'" },
  { "2022-01-01T10:00:00.Z", "fraction" },
  { "2022-01-01T10:00:00+0900", "offset" },
  { "2022-01-01T10:00:00+24:00", "offset" },
  { "2022-01-01T10:00:00+09:60", "offset" },
  { "2022-01-01T10:00:00ZZ", "after" },
  { "2022-1-01T10:00:00Z", "expected YYYY-MM-DDTHH:MM:SS" },
  { "22-01-01T10:00:00Z", "short" },
  { "2022-01-01T10:00:00Z ", "after" },
  { "+2022-01-01T10:00:00Z", "YYYY" },
  { "2022-1-011T10:00:00Z", "YYYY" },
  { "2022-01-01T1a:00:00Z", "digits" },
  { "", "short" },
}

describe("time", function()
  for _, s in ipairs(valid) do
    it("reads " .. s .. " as GNU date does", function()
      local secs, msg = webhook.time(s)
      assert.is_number(secs, msg)
      assert.is_true(math.abs(secs - gnu_date(s)) < 1e-6, secs .. " vs " .. gnu_date(s))
    end)
  end

  it("reads a leap second as the second after :59", function()
    assert.are.equal(webhook.time("2017-01-01T00:00:00Z"), webhook.time("2016-12-31T23:59:60Z"))
    assert.are.equal(webhook.time("2016-12-31T23:59:59Z") + 1, webhook.time("2016-12-31T23:59:60Z"))
  end)

  it("keeps the fraction", function()
    assert.are.equal(1709254804.5, webhook.time("2024-03-01T10:00:04.5+09:00"))
  end)

  for _, case in ipairs(invalid) do
    it("rejects " .. string.format("%q", case[1]) .. " saying what is wrong", function()
      local secs, msg = webhook.time(case[1])
      assert.is_nil(secs)
      assert.is_truthy(msg:find(case[2], 1, true), msg)
    end)
  end

  it("rejects the same strings inside a delivery with code format", function()
    local body = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json")
    for _, case in ipairs(invalid) do
      local edited = body:gsub('"startedAt":"[^"]*"', '"startedAt":"' .. case[1] .. '"')
      local ev, msg, info = webhook.parse(edited)
      assert.is_nil(ev)
      assert.are.equal("format", info.code, msg)
      assert.are.equal("/object/startedAt", info.path)
    end
  end)

  it("raises when given no string", function()
    assert.has_error(function() webhook.time(nil) end)
  end)
end)
