-- Replays fixtures through each example automation with `jicoo-webhook run` into a temporary
-- folder, and checks what the automation wrote; those that call out (Slack, Jicoo's API) call
-- the stand-ins of spec/standin.lua, served by a real nginx over TLS. Then the automations
-- together in one router: a handler that fails once is retried alone, and each automation run
-- again for a delivery it already handled changes nothing.
local cjson = require "cjson"
local support = require "support"
local runner = require "cli_runner"
local ok_servers, servers = pcall(require, "servers")
local can_serve = ok_servers and #servers.missing(false) == 0 and pcall(require, "socket")
  and pcall(require, "ssl")

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

-- Replays files (paths, or "@second_booking" / "@booking:UID" for a payload the case writes into
-- the output folder) through examples/<example>; returns the output folder.
local standin   -- started in setup when nginx and LuaSec are here

-- The environment that points the automations at the stand-ins.
local function standin_env()
  return " JICOO_SLACK_WEBHOOK_URL=" .. support.quote(standin.slack_url)
    .. " JICOO_API_URL=" .. support.quote(standin.api_url)
    .. " JICOO_API_KEY=" .. support.quote(standin.key)
    .. " SSL_CERT_FILE=" .. support.quote(standin.ca_file)
end

local function replay(example, files, options, env)
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
    elseif path:match("^@booking:") then
      local uid = path:match("^@booking:(.*)$")
      path = dir .. "/" .. uid .. ".json"
      support.write(path, (support.read(BOOKED):gsub('"uid": "ACDADADASS"', '"uid": "' .. uid .. '"')))
    end
    args[#args + 1] = support.quote(path)
  end
  local code, out, err = runner.run("run " .. table.concat(args, " "),
    "JICOO_OUTPUT_DIR=" .. support.quote(dir) .. " JICOO_NOTIFY_CHANNEL= JICOO_SLACK_WEBHOOK_URL="
    .. " JICOO_API_KEY= JICOO_BLOCKED_DOMAINS= JICOO_RULES_DRY_RUN=" .. (env or ""))
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
    name = "posts the message for each event to the Slack webhook",
    standin = true,
    files = { BOOKED, GUEST_RESCHEDULED, HOST_RESCHEDULED, GUEST_CANCELLED, HOST_CANCELLED, TOKYO,
      DRIFT, BOOKED_FULL },
    check = function()
      local texts = {}
      for i, body in ipairs(standin:recorded("slack")) do
        local message = cjson.decode(body)
        assert.is_nil(message.channel)
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
    standin = true,
    options = { "--set", "channel=#sales" },
    files = { TOKYO },
    check = function()
      local posted = standin:recorded("slack")
      assert.are.equal(1, #posted)
      assert.are.equal("#sales", cjson.decode(posted[1]).channel)
    end,
  },
  {
    example = "notify",
    name = "without a webhook URL, only says what it would post",
    files = { TOKYO },
    check = function(_, out)
      assert.truthy(out:find("would post to #bookings: New booking: 山田 太郎", 1, true), out)
    end,
  },
  {
    example = "notify",
    name = "a Slack that fails: the handler fails, exit 1, with Slack's answer",
    standin = true,
    before = function() standin:slack_fail(1) end,
    files = { TOKYO },
    code = 1,
    check = function(_, out)
      assert.truthy(out:find("FAILED", 1, true), out)
      assert.truthy(out:find("posting to Slack: answered 500 internal_error", 1, true), out)
      assert.are.same({}, standin:recorded("slack"))
    end,
  },
  {
    example = "enrich",
    name = "keeps one CRM record per booking, from the booking and its contacts",
    standin = true,
    files = { BOOKED, TOKYO },
    check = function(dir)
      local records = cjson.decode(support.read(dir .. "/crm.json"))
      local record = records.ACDADADASS
      assert.are.equal("https://meet.google.com/abc-defg-hij", record.meeting_url)
      assert.are.equal("Example K.K.", record.company)
      assert.are.equal("+81-3-0000-0000", record.phone)
      assert.are.equal("googleMeet", record.location)
      assert.are.equal("twitter", record.source)
      assert.truthy(records.bk_7Hq2)
      assert.are.same({ "GET /v1/bookings/ACDADADASS", "GET /v1/bookings/ACDADADASS/contacts",
        "GET /v1/bookings/bk_7Hq2", "GET /v1/bookings/bk_7Hq2/contacts" }, standin:recorded("requests"))
    end,
  },
  {
    example = "enrich",
    name = "a booking without contacts takes the guest from the webhook",
    standin = true,
    files = { "@booking:bk_nocontacts" },
    check = function(dir)
      local record = cjson.decode(support.read(dir .. "/crm.json")).bk_nocontacts
      assert.are.equal("example@example.com", record.guest_email)
      assert.is_nil(record.company)
    end,
  },
  {
    example = "enrich",
    name = "an API failure fails the handler, naming the call, never the key",
    standin = true,
    files = { "@booking:bk_missing" },
    code = 1,
    check = function(dir, out)
      assert.truthy(out:find("jicoo api: GET /bookings/bk_missing: 404 Not Found", 1, true), out)
      assert.falsy(out:find(standin.key, 1, true), out)
      assert.is_false(exists(dir .. "/crm.json"))
    end,
  },
  {
    example = "rules",
    name = "a dry run by default: says what it would cancel, calls nothing",
    standin = true,
    options = { "--set", "blocked_domains=example.com" },
    files = { BOOKED, TOKYO },
    check = function(_, out)
      assert.truthy(out:find("dry run: would cancel ACDADADASS (example.com is blocked)", 1, true), out)
      assert.are.same({}, standin:recorded("requests"))
    end,
  },
  {
    example = "rules",
    name = "cancels a booking from a blocked domain with the reason, once, and no other",
    standin = true,
    options = { "--set", "blocked_domains=spam.test,example.com", "--set", "dry_run=0" },
    files = { BOOKED, TOKYO },
    check = function(_, out)
      local cancelled = standin:recorded("cancelled")
      assert.are.equal(1, #cancelled, out)
      local record = cjson.decode(cancelled[1])
      assert.are.equal("ACDADADASS", record.uid)
      assert.truthy(record.body.reason:find("not accepted", 1, true))
      -- run again (another journal): the booking reads as cancelled, nothing more is sent
      local _, code, again = replay("rules", { BOOKED }, { "--set", "blocked_domains=example.com",
        "--set", "dry_run=0" }, standin_env())
      assert.are.equal(0, code, again)
      assert.truthy(again:find("ACDADADASS is already cancelled", 1, true), again)
      assert.are.equal(1, #standin:recorded("cancelled"))
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
        key = "guest_cancelled/ACDADADASS/2022-08-30T09:12:44.120Z",
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
      local attribution = cjson.decode(support.read(dir .. "/campaigns.json"))
      assert.are.same({
        twitter = { winter_campaign = 2 },
        ["(none)"] = { ["(none)"] = 1 },
      }, attribution.counts)
      assert.are.same({ ACDADADASS = "twitter/winter_campaign", SECOND42 = "twitter/winter_campaign",
        bk_7Hq2 = "(none)/(none)" }, attribution.bookings)
      assert.is_false(exists(dir .. "/campaigns.json.tmp"))
    end,
  },
}

-- One stand-in nginx for the whole file.
setup(function()
  if can_serve then
    standin = servers.standin(servers.temp_dir())
  end
end)
teardown(function()
  if standin then
    standin:stop()
    servers.remove_dir(standin.dir)
  end
end)

describe("examples", function()
  for _, case in ipairs(cases) do
    local test = (case.standin and not can_serve) and function(name)
      pending(name .. ": needs nginx with its Lua module, lua-socket and lua-sec")
    end or it
    test(case.example .. ": " .. case.name, function()
      if case.standin then
        standin:reset()
      end
      if case.before then
        case.before()
      end
      local dir, code, out, err = replay(case.example, case.files, case.options,
        case.standin and standin_env() or nil)
      local ok, failure = pcall(function()
        assert.are.equal(case.code or 0, code, out .. err)
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
    for _, example in ipairs({ "ledger", "notify", "cancellations", "campaigns", "enrich", "rules" }) do
      local readme = support.read(EXAMPLES .. "/" .. example .. "/README.md")
      assert.truthy(#readme > 200, example)
    end
  end)
end)

-- The automations together, in one router with a memory journal, as a receiver runs them.
local function automations_router(dir, folders)
  local webhook = require "jicoo.webhook"
  local http = require "jicoo.net.http"
  local router = webhook.router({
    verify = false,
    journal = require("jicoo.webhook.journal").memory(),
    retry_delays = { 0 },
    log = function() end,
    config = { output_dir = dir, slack_webhook_url = standin.slack_url,
      jicoo_api_url = standin.api_url, jicoo_api_key = standin.key },
    -- a transport of one's own: the library's, trusting the stand-in's CA
    http = function(req)
      req.ca_file = standin.ca_file
      return http.request(req)
    end,
  })
  for _, folder in ipairs(folders) do
    assert(router:load(EXAMPLES .. "/" .. folder))
  end
  return router
end

local function line_count(path)
  if not exists(path) then
    return 0
  end
  local _, n = support.read(path):gsub("\n", "")
  return n
end

describe("examples, together: safe to run again", function()
  local test = can_serve and it or function(name) pending(name .. ": needs the stand-ins") end
  local dir

  before_each(function()
    dir = runner.temp_dir()
    if standin then
      standin:reset()
    end
  end)
  after_each(function()
    runner.remove_dir(dir)
  end)

  test("a handler that fails once is retried alone: one post, one line, one count, one record", function()
    local router = automations_router(dir, { "ledger", "notify", "cancellations", "campaigns", "enrich" })
    standin:slack_fail(1)
    local res = router:handle(support.read(BOOKED), {})
    assert.are.equal(500, res.status)
    assert.are.equal(1, line_count(dir .. "/ledger.jsonl"))
    assert.are.same({}, standin:recorded("slack"))
    local ran = router:run_due()
    assert.are.equal(1, ran)
    assert.are.equal(1, #standin:recorded("slack"))
    assert.are.equal(1, line_count(dir .. "/ledger.jsonl"))
    local attribution = cjson.decode(support.read(dir .. "/campaigns.json"))
    assert.are.same({ twitter = { winter_campaign = 1 } }, attribution.counts)
    assert.truthy(cjson.decode(support.read(dir .. "/crm.json")).ACDADADASS)
    -- enrich ran once: its two calls, not four
    assert.are.equal(2, #standin:recorded("requests"))
    assert.are.equal(0, router:run_due())
  end)

  test("run again for deliveries already handled (the journal lost them), the files do not change", function()
    -- notify is left out: a post is the one effect that cannot be taken back or recognised
    -- (Slack has no idempotency key), which the journal alone guards.
    local folders = { "ledger", "cancellations", "campaigns", "enrich" }
    local function files()
      local text = {}
      for _, name in ipairs({ "ledger.jsonl", "cancellations.jsonl", "campaigns.json", "slots.json" }) do
        text[name] = exists(dir .. "/" .. name) and support.read(dir .. "/" .. name) or nil
      end
      local crm = cjson.decode(support.read(dir .. "/crm.json"))
      return text, crm
    end
    for _, path in ipairs({ BOOKED, GUEST_CANCELLED }) do
      assert.are.equal(200, automations_router(dir, folders):handle(support.read(path), {}).status)
    end
    local first, first_crm = files()
    for _, path in ipairs({ BOOKED, GUEST_CANCELLED }) do
      assert.are.equal(200, automations_router(dir, folders):handle(support.read(path), {}).status)
    end
    local again, again_crm = files()
    assert.are.same(first, again)
    assert.are.same(first_crm, again_crm)
    assert.are.equal(2, line_count(dir .. "/ledger.jsonl"))
    assert.are.equal(1, line_count(dir .. "/cancellations.jsonl"))
    assert.is_true(cjson.decode(support.read(dir .. "/cancellations.jsonl")).slot_was_held)
  end)
end)

describe("examples/openresty/nginx.conf", function()
  it("is what the one nginx.conf writer (nginx_conf.lua) writes for a checkout at /srv/jicoo-webhook", function()
    local nginx_conf = require "jicoo.webhook.nginx.conf"
    local expected = nginx_conf.render({
      lua_dir = "/srv/jicoo-webhook/lua",
      core_dir = "/srv/jicoo-webhook/build/luajit",
      handlers = nginx_conf.example_handlers("/srv/jicoo-webhook/examples"),
    })
    assert.are.equal(expected, support.read(support.root .. "/examples/openresty/nginx.conf"))
  end)
end)
