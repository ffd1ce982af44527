-- jicoo.api and ctx.http in plain Lua (LuaSocket, LuaSec) against the stand-in Jicoo API of
-- spec/standin.lua, served over TLS by a real nginx with a certificate of a CA the openssl
-- command line makes: every call, pagination, the failures Jicoo documents (404, 422, 429, 5xx),
-- a slow and a truncated answer, retries and their bounds, a wrong CA, and that the key is never
-- in a message, an info table or a log line.
local support = require "support"
local missing = support.missing_http_client()
if not pcall(require, "cjson") then missing[#missing + 1] = "lua-cjson" end
if #missing > 0 then
  describe("jicoo.api", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local api = require "jicoo.api"
local servers = require "servers"
local webhook = require "jicoo.webhook"

local standin, dir
local said = {}   -- every message, info and log line, to look for the key in

local function remember(...)
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    said[#said + 1] = type(value) == "table" and require("jicoo.webhook.payload.json").encode(value)
      or tostring(value)
  end
  return ...
end

local function client(opts)
  opts = opts or {}
  return api.client({
    key = opts.key or standin.key, base_url = standin.api_url, ca_file = opts.ca_file or standin.ca_file,
    retry = opts.retry or { attempts = 3, base_delay = 0.05, max_delay = 0.2, max_time = 10 },
    timeout = opts.timeout, log = function(line) remember(line) end,
  })
end

local function requests()
  return standin:recorded("requests")
end

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
end)

describe("jicoo.api.client", function()
  it("wants a key, and says so without printing one", function()
    assert.has_error(function() api.client({ key = "" }) end,
      "jicoo.api.client: no API key: give opts.key, or set JICOO_API_KEY")
    local ok, err = pcall(api.client, { key = "sk_live_secret \n" })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("whitespace", 1, true))
    assert.falsy(tostring(err):find("sk_live_secret", 1, true))
    assert.falsy(tostring(client()):find(standin.key, 1, true))
  end)

  it("refuses a bad retry setting", function()
    assert.has_error(function() api.client({ key = "k", retry = { attempts = 0 } }) end)
    assert.has_error(function() api.client({ key = "k", retry = { max_time = -1 } }) end)
  end)
end)

describe("jicoo.api against the stand-in", function()
  it("gets a booking: Jicoo's data, its nulls absent, the key sent as X-Jicoo-Api-Key", function()
    local booking = assert(remember(client():booking("bk_8Yt2")))
    assert.are.equal("bk_8Yt2", booking.uid)
    assert.are.equal("https://meet.google.com/abc-defg-hij", booking.url)
    assert.is_nil(booking.description)
    assert.is_nil(booking.cancelReason)
    assert.are.equal("admin", booking.hosts[1].role)
    assert.are.same({ "GET /v1/bookings/bk_8Yt2" }, requests())
  end)

  it("gets a booking's contacts", function()
    local contacts = assert(client():booking_contacts("bk_8Yt2"))
    assert.are.equal("Example K.K.", contacts[1].company)
    assert.are.equal("+81-3-0000-0000", contacts[1].phoneNumber)
    assert.are.same({ "Pricing" }, contacts[1].answers[1].content)
  end)

  it("escapes a uid in the path", function()
    assert(client():booking("a b/c"))
    assert.are.same({ "GET /v1/bookings/a%20b%2Fc" }, requests())
  end)

  it("404: nil, a message with the status and Jicoo's errors, the raw body; no retry", function()
    local data, msg, code, info = remember(client():booking("bk_missing"))
    assert.is_nil(data)
    assert.are.equal("not_found", code)
    assert.are.equal("jicoo api: GET /bookings/bk_missing: 404 Not Found (message: booking not found)", msg)
    assert.are.equal(404, info.status)
    assert.are.equal("booking not found", info.errors.message)
    assert.truthy(info.body:find('"booking not found"', 1, true))
    assert.are.equal(1, info.attempts)
    assert.are.equal(1, #requests())
  end)

  it("401 for a wrong key, not retried, and the wrong key is not in the message", function()
    local data, msg, code, info = client({ key = "sk_live_wrong_key" }):booking("bk_1")
    assert.is_nil(data)
    assert.are.equal("unauthorized", code)
    assert.are.equal(401, info.status)
    assert.falsy(msg:find("sk_live_wrong_key", 1, true))
    assert.are.equal(1, #requests())
  end)

  it("429 twice, then 200: retried with backoff, one log line per retry", function()
    local lines = {}
    local c = client()
    c.log = function(line) lines[#lines + 1] = remember(line) end
    local booking = assert(c:booking("bk_busy"))
    assert.are.equal("bk_busy", booking.uid)
    assert.are.equal(3, #requests())
    assert.are.equal(2, #lines)
    assert.truthy(lines[1]:find("^jicoo api: GET /bookings/bk_busy: 429 Too Many Requests; attempt 2 of 3 in 0%.%d s$"),
      lines[1])
  end)

  it("500 every time: as many attempts as allowed, then the last answer", function()
    local data, msg, code, info = remember(client():booking("bk_broken"))
    assert.is_nil(data)
    assert.are.equal("server", code)
    assert.are.equal(500, info.status)
    assert.are.equal(3, info.attempts)
    assert.truthy(msg:find(", after 3 attempts$"), msg)
    assert.are.equal(3, #requests())
  end)

  it("stops retrying when the next wait would pass max_time", function()
    local c = client({ retry = { attempts = 10, base_delay = 5, max_delay = 5, max_time = 1 } })
    local started = os.time()
    local _, _, _, info = c:booking("bk_broken")
    assert.are.equal(1, info.attempts)
    assert.truthy(os.time() - started <= 1)
  end)

  it("a slow answer past the timeout is a network failure, retried", function()
    local data, msg, code, info = remember(client({ timeout = 300,
      retry = { attempts = 2, base_delay = 0.05, max_delay = 0.05, max_time = 10 } }):booking("bk_slow"))
    assert.is_nil(data)
    assert.are.equal("timeout", code)
    assert.is_nil(info.status)
    assert.are.equal(2, info.attempts)
    assert.truthy(msg:find("timeout", 1, true), msg)
  end)

  it("a truncated answer is a failure, not a partial booking", function()
    local data, msg = remember(client({ retry = { attempts = 1 } }):booking("bk_truncated"))
    assert.is_nil(data)
    assert.truthy(msg:find("jicoo api: GET /bookings/bk_truncated: ", 1, true), msg)
  end)

  it("lists bookings page by page, with the filters in the query", function()
    local uids, pages = {}, 0
    for items, page in client():bookings({ status = "open", perPage = 2 }) do
      assert.truthy(items, page)
      pages = pages + 1
      assert.are.equal(pages, page.currentPage)
      assert.are.equal(5, page.totalCount)
      for _, booking in ipairs(items) do
        uids[#uids + 1] = booking.uid
      end
    end
    assert.are.equal(3, pages)
    assert.are.same({ "bk_list_1", "bk_list_2", "bk_list_3", "bk_list_4", "bk_list_5" }, uids)
    assert.are.same({ "GET /v1/bookings?page=1&perPage=2&status=open",
      "GET /v1/bookings?page=2&perPage=2&status=open",
      "GET /v1/bookings?page=3&perPage=2&status=open" }, requests())
  end)

  it("a page that fails gives false, msg, code, info once, and the loop ends", function()
    local steps = {}
    for items, msg, code, info in client({ key = "sk_live_wrong_key" }):bookings() do
      steps[#steps + 1] = { items, msg, code, info and info.status }
    end
    assert.are.equal(1, #steps)
    assert.is_false(steps[1][1])
    assert.are.equal("unauthorized", steps[1][3])
    assert.are.equal(401, steps[1][4])
  end)

  it("cancels with a reason (the guessed body), and the booking reads as cancelled", function()
    local c = client()
    local booking = assert(c:cancel("bk_c1", "Booked from a blocked domain"))
    assert.are.equal("cancel", booking.status)
    local cancelled = standin:recorded("cancelled")
    assert.are.same({ uid = "bk_c1", body = { reason = "Booked from a blocked domain" } },
      require("cjson").decode(cancelled[1]))
    assert.are.equal("cancel", assert(c:booking("bk_c1")).status)
  end)

  it("reschedules, and 422 for a slot that is taken is final", function()
    local c = client()
    local booking = assert(c:reschedule("bk_r1", { startedAt = "2026-03-08T01:00:00.000Z",
      timeZone = "Asia/Tokyo" }))
    assert.are.equal("2026-03-08T01:00:00.000Z", booking.startedAt)
    local data, msg, code, info = c:reschedule("bk_r1", { startedAt = "2030-01-01T00:00:00.000Z",
      timeZone = "Asia/Tokyo" })
    assert.is_nil(data)
    assert.are.equal("rejected", code)
    assert.are.equal(422, info.status)
    assert.are.same({ "is not available" }, info.errors.startedAt)
    assert.truthy(msg:find("(startedAt: is not available)", 1, true), msg)
    assert.are.equal(2, #requests())
    assert.has_error(function() c:reschedule("bk_r1", { startedAt = "x" }) end)
  end)

  it("updates a booking", function()
    local booking = assert(client():update("bk_u1", { priority = "high", isSendUpdates = false }))
    assert.are.equal("high", booking.priority)
    assert.is_false(booking.isSendUpdates)
  end)

  it("reads event types, their hosts (the guessed filter) and open slots", function()
    local c = client()
    local types = {}
    for items in c:event_types() do
      for _, item in ipairs(items) do
        types[#types + 1] = item.uid
      end
    end
    assert.are.same({ "et_intro30" }, types)
    assert.are.equal(30, assert(c:event_type("et_intro30")).duration)
    local hosts = {}
    for items in c:event_type_hosts("et_intro30") do
      hosts[#hosts + 1] = items[1].name
    end
    assert.are.same({ "Taro Host" }, hosts)
    local slots = assert(c:available_schedules("et_intro30",
      { periodStart = "2026-03-09T00:00:00.000Z", periodEnd = "2026-03-15T00:00:00.000Z" }))
    assert.are.equal(1, slots[1].remainingCapacity)
    local _, _, code, info = c:event_type("et_none")
    assert.are.equal("not_found", code)
    assert.are.equal(404, info.status)
  end)

  it("refuses the API's certificate under a CA it does not trust", function()
    local data, msg = remember(client({ ca_file = standin.other_ca_file, retry = { attempts = 1 } })
      :booking("bk_1"))
    assert.is_nil(data)
    assert.truthy(msg:find("TLS", 1, true), msg)
    assert.are.same({}, requests())
  end)

  it("never says the key: no message, info or log line above holds it", function()
    assert.truthy(#said > 10)
    for _, text in ipairs(said) do
      assert.falsy(text:find(standin.key, 1, true), text)
    end
  end)
end)

describe("ctx.http", function()
  local function delivery()
    return support.read(support.fixtures .. "/valid/guest_cancelled.json")
  end

  it("is the library's HTTP client by default, in every handler", function()
    local router = webhook.router({ verify = false })
    local answers = {}
    router:on("*", function(_, ctx)
      local res = assert(ctx.http({ method = "POST", url = standin.slack_url,
        headers = { ["Content-Type"] = "application/json" }, body = '{"text":"hello"}' }))
      answers[#answers + 1] = res.status .. " " .. res.body
    end)
    assert.are.equal(200, router:handle(delivery(), {}).status)
    assert.are.same({ "200 ok" }, answers)
    assert.are.same({ '{"text":"hello"}' }, standin:recorded("slack"))
  end)

  it("is opts.http when the router is given a transport of one's own", function()
    local seen = {}
    local router = webhook.router({ verify = false, http = function(req)
      seen[#seen + 1] = req.method .. " " .. req.url
      return { status = 204, reason = "No Content", headers = {}, body = "" }
    end })
    router:on("*", function(_, ctx)
      assert.are.equal(204, ctx.http({ method = "DELETE", url = "https://example.invalid/x" }).status)
    end)
    assert.are.equal(200, router:handle(delivery(), {}).status)
    assert.are.same({ "DELETE https://example.invalid/x" }, seen)
    assert.has_error(function() webhook.router({ verify = false, http = "curl" }) end)
  end)

  it("carries jicoo.api in a handler, with the key from the router's config", function()
    local router = webhook.router({ verify = false, config = { jicoo_api_key = standin.key } })
    local meeting
    router:on("*", function(ev, ctx)
      local jicoo = api.client({ http = ctx.http, key = ctx:setting("jicoo_api_key", "JICOO_API_KEY"),
        base_url = standin.api_url, ca_file = standin.ca_file })
      meeting = assert(jicoo:booking(ev.object.uid)).url
    end)
    assert.are.equal(200, router:handle(delivery(), {}).status)
    assert.are.equal("https://meet.google.com/abc-defg-hij", meeting)
  end)
end)
