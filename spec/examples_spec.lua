-- Replays fixtures through each example automation with `jicoo-webhook run` into a temporary
-- folder, and checks what the automation wrote.
local cjson = require "cjson"
local support = require "support"
local runner = require "cli_runner"

local FIXTURES = support.fixtures
local EXAMPLES = runner.root .. "/examples"

local function fixture(path)
  return FIXTURES .. "/" .. path
end

local BOOKED = fixture("lenient/portal_guest_booked.json")
local BOOKED_FULL = fixture("valid/strict_guest_booked_full.json")  -- the same delivery
local GUEST_RESCHEDULED = fixture("lenient/portal_guest_rescheduled.json")
local HOST_RESCHEDULED = fixture("lenient/portal_host_rescheduled.json")
local GUEST_CANCELLED = fixture("valid/guest_cancelled.json")
local HOST_CANCELLED = fixture("valid/host_cancelled.json")
local TOKYO = fixture("valid/tokyo_no_utm_compact.json")
local DRIFT = fixture("lenient/drift.json")

local function read_json_lines(path)
  local records = {}
  for line in support.read(path):gmatch("[^\n]+") do
    records[#records + 1] = cjson.decode(line)
  end
  return records
end

local function exists(path)
  local file = io.open(path, "rb")
  if file then
    file:close()
  end
  return file ~= nil
end

-- Replays files (paths, or "@second_booking" for a payload the case writes into the output
-- folder) through examples/<example>; returns the output folder.
local function replay(example, files, options)
  local dir = runner.temp_dir()
  local args = {}
  for _, option in ipairs(options or {}) do
    args[#args + 1] = option
  end
  args[#args + 1] = support.quote(EXAMPLES .. "/" .. example)
  for _, path in ipairs(files) do
    if path == "@second_booking" then
      -- Another guest's booking through the same campaign.
      local body = support.read(BOOKED):gsub('"uid": "ACDADADASS"', '"uid": "SECOND42"')
        :gsub("John Doe", "Jane Roe")
      path = dir .. "/second_booking.json"
      support.write(path, body)
    end
    args[#args + 1] = support.quote(path)
  end
  local code, out, err = runner.run("run " .. table.concat(args, " "),
    "JICOO_OUTPUT_DIR=" .. support.quote(dir) .. " JICOO_NOTIFY_CHANNEL=")
  return dir, code, out, err
end

local cases = {
  {
    example = "ledger",
    name = "appends one line per booking state, a repeated delivery once",
    files = { BOOKED, BOOKED_FULL, GUEST_RESCHEDULED, HOST_CANCELLED, TOKYO, DRIFT },
    check = function(dir)
      local lines = read_json_lines(dir .. "/ledger.jsonl")
      local summary = {}
      for i, record in ipairs(lines) do
        summary[i] = table.concat({ record.event, record.uid, record.status,
          tostring(record.kind), tostring(record.actor) }, " ")
      end
      assert.are.same({
        "guest_booked ACDADADASS open booked guest",
        "guest_rescheduled ACDADADASS open rescheduled guest",
        "host_cancelled ACDADADASS cancel cancelled host",
        "guest_booked bk_7Hq2 open booked guest",
        "guest_assigned ACDADADASS request nil nil",
      }, summary)
      assert.are.equal("guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z", lines[1].key)
      assert.are.equal("2020-11-23T17:51:19.000Z", lines[1].event_at)
      assert.are.equal("2022-09-01T17:00:00.000Z", lines[1].starts_at)
      assert.is_nil(lines[1].cancel_reason)
      assert.are.equal("Host unavailable, sorry!", lines[3].cancel_reason)
      assert.are.equal("host", lines[3].cancelled_by)
      assert.are.equal("山田 太郎", lines[4].guest_name)
      assert.are.equal("Asia/Tokyo", lines[4].time_zone)
      assert.are.equal("et_consult60", lines[4].event_type)
      assert.are.equal("number", type(lines[4].received_at))
    end,
  },
  {
    example = "notify",
    name = "writes the message for each event to the outbox",
    files = { BOOKED, GUEST_RESCHEDULED, HOST_RESCHEDULED, GUEST_CANCELLED, HOST_CANCELLED, TOKYO,
      DRIFT, BOOKED_FULL },
    check = function(dir)
      local messages = read_json_lines(dir .. "/outbox.jsonl")
      local texts = {}
      for i, message in ipairs(messages) do
        assert.are.equal("#bookings", message.channel)
        texts[i] = message.text
      end
      assert.are.same({
        "New booking: John Doe <example@example.com>, 2022-09-01 17:00 UTC, 60 min"
          .. " (guest's time zone: America/New_York)\n> How did you find out? SNS, DM",
        "Rescheduled by the guest: John Doe <example@example.com> moved their meeting to"
          .. " 2022-09-01 17:00 UTC",
        "Rescheduled by the host: the meeting with John Doe <example@example.com> is now at"
          .. " 2022-09-01 17:00 UTC",
        "Cancelled by the guest: John Doe <example@example.com> cancelled 2022-09-01 17:00 UTC."
          .. " Reason: 体調不良のため",
        "Cancelled by the host: the meeting with John Doe <example@example.com> at 2022-09-01"
          .. " 17:00 UTC is off (reason: Host unavailable, sorry!). Please follow up with the guest.",
        "New booking: 山田 太郎 <taro.yamada@example.jp>, 2024-03-05 01:00 UTC, 60 min"
          .. " (guest's time zone: Asia/Tokyo)",
      }, texts)
    end,
  },
  {
    example = "notify",
    name = "posts to the channel given with --set",
    options = { "--set", "channel=#sales" },
    files = { TOKYO },
    check = function(dir)
      local messages = read_json_lines(dir .. "/outbox.jsonl")
      assert.are.equal(1, #messages)
      assert.are.equal("#sales", messages[1].channel)
    end,
  },
  {
    example = "cancellations",
    name = "holds a slot on booking, frees it on the guest's cancellation with the reason",
    files = { BOOKED, TOKYO, GUEST_CANCELLED },
    check = function(dir)
      local slots = cjson.decode(support.read(dir .. "/slots.json"))
      assert.are.equal("freed", slots.ACDADADASS.state)
      assert.are.equal("guest_cancelled", slots.ACDADADASS.freed_by)
      assert.are.same({ state = "held", starts_at = "2024-03-05T01:00:00Z",
        ends_at = "2024-03-05T02:00:00Z", event_type = "et_consult60",
        guest_email = "taro.yamada@example.jp" }, slots.bk_7Hq2)
      local records = read_json_lines(dir .. "/cancellations.jsonl")
      assert.are.same({ {
        uid = "ACDADADASS", event = "guest_cancelled", cancelled_by = "guest",
        reason = "体調不良のため", cancelled_at = "2022-08-30T09:12:43.987Z",
        starts_at = "2022-09-01T17:00:00.000Z", guest_email = "example@example.com",
        slot_was_held = true,
      } }, records)
    end,
  },
  {
    example = "cancellations",
    name = "a host cancellation overtaking its booking: recorded, and the slot stays free",
    files = { HOST_CANCELLED, BOOKED },
    check = function(dir)
      local slots = cjson.decode(support.read(dir .. "/slots.json"))
      assert.are.equal("freed", slots.ACDADADASS.state)
      local records = read_json_lines(dir .. "/cancellations.jsonl")
      assert.are.equal(1, #records)
      assert.are.equal("host", records[1].cancelled_by)
      assert.are.equal("Host unavailable, sorry!", records[1].reason)
      assert.is_false(records[1].slot_was_held)
      assert.are.equal("apologise and offer a new time", records[1].follow_up)
    end,
  },
  {
    example = "cancellations",
    name = "writes no cancellation record without a cancellation",
    files = { TOKYO, DRIFT },
    check = function(dir)
      assert.is_false(exists(dir .. "/cancellations.jsonl"))
      local slots = cjson.decode(support.read(dir .. "/slots.json"))
      assert.are.equal("held", slots.bk_7Hq2.state)
      assert.is_nil(slots.ACDADADASS)   -- drift.json's status is not "open"
    end,
  },
  {
    example = "campaigns",
    name = "counts bookings per utm_source and utm_campaign, each delivery once",
    files = { BOOKED, BOOKED_FULL, "@second_booking", TOKYO, GUEST_CANCELLED, DRIFT },
    check = function(dir)
      assert.are.same({
        twitter = { winter_campaign = 2 },
        ["(none)"] = { ["(none)"] = 1 },
      }, cjson.decode(support.read(dir .. "/campaigns.json")))
      assert.is_false(exists(dir .. "/campaigns.json.tmp"))
    end,
  },
}

describe("examples", function()
  for _, case in ipairs(cases) do
    it(case.example .. ": " .. case.name, function()
      local dir, code, out, err = replay(case.example, case.files, case.options)
      local ok, failure = pcall(function()
        assert.are.equal(0, code, out .. err)
        assert.are.equal("", err)
        case.check(dir, out)
      end)
      runner.remove_dir(dir)
      if not ok then
        error(failure, 0)
      end
    end)
  end

  it("every example has a README paragraph", function()
    for _, example in ipairs({ "ledger", "notify", "cancellations", "campaigns" }) do
      local readme = support.read(EXAMPLES .. "/" .. example .. "/README.md")
      assert.truthy(#readme > 200, example)
    end
  end)
end)

describe("examples/openresty/nginx.conf", function()
  it("is what the one nginx.conf writer (nginx_conf.lua) writes for a checkout at /srv/jicoo-webhook", function()
    local nginx_conf = require "jicoo.webhook.nginx_conf"
    local expected = nginx_conf.render({
      lua_dir = "/srv/jicoo-webhook/lua",
      core_dir = "/srv/jicoo-webhook/build/luajit",
      handlers = nginx_conf.example_handlers("/srv/jicoo-webhook/examples"),
    })
    assert.are.equal(expected, support.read(support.root .. "/examples/openresty/nginx.conf"))
  end)
end)
