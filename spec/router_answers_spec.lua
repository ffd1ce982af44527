-- What the router answers a request: every fixture to its status at both levels (valid 200,
-- lenient 400 at strict, invalid 400 with its code and path, an unknown event or one with no
-- handler 200), every signature failure to 401 with its code and the headers it accepts,
-- secrets in rotation, the tolerance and the ttl it needs, verify = false, and a body over
-- max_size to 413 before its signature is checked.
local webhook = require "jicoo.webhook"
local journal_module = require "jicoo.webhook.journal"
local cjson = require "cjson"   -- an independent reader of the response bodies
local support = require "support"
local shared = require "router_shared"

local SECRET, NOW, SIGNATURE, fixture = shared.SECRET, shared.NOW, shared.SIGNATURE, shared.fixture
local signed, new_router, recorder = shared.signed, shared.new_router, shared.recorder
local decode, BOOKED = shared.decode, shared.BOOKED

describe("router: fixtures", function()
  local valid = support.list(support.fixtures .. "/valid", "%.json$")
  it("finds the valid fixtures", function()
    assert.is_true(#valid >= 4)
  end)
  for _, level in ipairs({ "lenient", "strict" }) do
    for _, name in ipairs(valid) do
      it("valid/" .. name .. " -> 200 at the " .. level .. " level", function()
        local body = fixture("valid", name)
        local r = new_router({ level = level })
        local calls = recorder(r, { "*" })
        local res = r:handle(body, signed(body))
        assert.are.equal(200, res.status)
        local doc = decode(res)
        assert.is_true(doc.ok)
        assert.are.equal("handled", doc.result)
        assert.are.equal(cjson.decode(body).event, doc.event)
        assert.are.same({ "*:" .. doc.event }, calls)
        assert.are.equal(doc.event, res.event.event)
      end)
    end
  end

  for _, row in ipairs(support.expectations("lenient")) do
    it("lenient/" .. row.file .. " -> 200 lenient, 400 " .. row.code .. " strict", function()
      local body = fixture("lenient", row.file)
      local res = new_router():handle(body, signed(body))
      assert.are.equal(200, res.status)

      local strict = new_router({ level = "strict" })
      local calls = recorder(strict, { "*" })
      res = strict:handle(body, signed(body))
      assert.are.equal(400, res.status)
      local doc = decode(res)
      assert.are.equal("invalid_payload", doc.error)
      assert.are.equal(row.code, doc.code)
      assert.are.equal(row.path, doc.path)
      assert.are.same({}, calls)
    end)
  end

  for _, row in ipairs(support.expectations("invalid")) do
    it("invalid/" .. row.file .. " -> 400 " .. row.code .. " at " .. tostring(row.path), function()
      local body = fixture("invalid", row.file)
      for _, level in ipairs({ "lenient", "strict" }) do
        local r = new_router({ level = level })
        local calls = recorder(r, { "*" })
        local res = r:handle(body, signed(body))
        assert.are.equal(400, res.status)
        local doc = decode(res)
        assert.is_false(doc.ok)
        assert.are.equal(row.code, doc.code)
        assert.are.equal(row.path, doc.path)
        assert.are.equal("string", type(doc.message))
        assert.are.equal(row.code, res.errors[1].code)
        assert.are.same({}, calls)
      end
    end)
  end

  it("an unknown event (lenient) reaches '*' handlers only and says it was unknown", function()
    local body = fixture("lenient", "drift.json")
    local r = new_router()
    local calls = recorder(r, { "guest_booked", "*" })
    local res = r:handle(body, signed(body))
    assert.are.equal(200, res.status)
    local doc = decode(res)
    assert.is_true(doc.unknown)
    assert.are.equal("guest_assigned", doc.event)
    assert.are.same({ "*:guest_assigned" }, calls)
  end)

  it("an event with no handler answers 200", function()
    local res = new_router():handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.equal(0, decode(res).handlers)
    assert.is_nil(decode(res).unknown)
  end)
end)

describe("router: signatures", function()
  local tampered_body = BOOKED:gsub("John Doe", "John Dough")
  local good = webhook.sign(SECRET, BOOKED, NOW)
  local good_hex = good:match("v1=(%x+)")
  local flipped_hex = (good_hex:sub(1, 1) == "0" and "1" or "0") .. good_hex:sub(2)

  local failures = {
    { "no header", nil, "missing_header" },
    { "a header without t", "v1=" .. good_hex, "malformed_header" },
    { "a non-integer t", "t=soon,v1=" .. good_hex, "malformed_header" },
    { "no v1 signature", "t=" .. NOW, "no_signature" },
    { "only an unknown scheme", "t=" .. NOW .. ",v0=" .. good_hex, "no_signature" },
    { "a timestamp 301 s old", webhook.sign(SECRET, BOOKED, NOW - 301), "expired" },
    { "a timestamp 301 s ahead", webhook.sign(SECRET, BOOKED, NOW + 301), "expired" },
    { "the wrong secret", webhook.sign("whsec_other", BOOKED, NOW), "mismatch" },
    { "one flipped hex digit", "t=" .. NOW .. ",v1=" .. flipped_hex, "mismatch" },
    { "t changed after signing", "t=" .. (NOW + 1) .. ",v1=" .. good_hex, "mismatch" },
    { "a body changed after signing", webhook.sign(SECRET, tampered_body, NOW), "mismatch" },
  }
  for _, case in ipairs(failures) do
    it(case[1] .. " -> 401 " .. case[3], function()
      local r = new_router()
      local calls = recorder(r, { "*" })
      local res = r:handle(BOOKED, { [SIGNATURE] = case[2] })
      assert.are.equal(401, res.status)
      local doc = decode(res)
      assert.are.equal("bad_signature", doc.error)
      assert.are.equal(case[3], doc.code)
      assert.are.equal(case[3], res.errors[1].code)
      assert.are.same({}, calls)
    end)
  end

  local accepted = {
    { "the exact header name", { [SIGNATURE] = good } },
    { "a lower-case header name", { ["jicoo-webhook-signature"] = good } },
    { "an upper-case header name", { ["JICOO-WEBHOOK-SIGNATURE"] = good } },
    { "the header sent twice (a list)", { [SIGNATURE] = { "t=" .. NOW, "v1=" .. good_hex } } },
    { "upper-case hex", { [SIGNATURE] = "t=" .. NOW .. ",v1=" .. good_hex:upper() } },
    { "spaces after commas", { [SIGNATURE] = "t=" .. NOW .. ", v0=00, v1=" .. good_hex } },
    { "a second, wrong v1 before the right one",
      { [SIGNATURE] = "t=" .. NOW .. ",v1=" .. flipped_hex .. ",v1=" .. good_hex } },
    { "a timestamp 300 s old", signed(BOOKED, NOW - 300) },
  }
  for _, case in ipairs(accepted) do
    it(case[1] .. " -> 200", function()
      local res = new_router():handle(BOOKED, case[2])
      assert.are.equal(200, res.status, res.body)
    end)
  end

  it("accepts any of several secrets (rotation)", function()
    local r = new_router({ secrets = { "whsec_old", SECRET } })
    assert.are.equal(200, r:handle(BOOKED, signed(BOOKED)).status)
    local r2 = new_router({ secrets = { "whsec_old", "whsec_older" } })
    assert.are.equal(401, r2:handle(BOOKED, signed(BOOKED)).status)
  end)

  -- A delivery stays acceptable for up to 2 x tolerance after it was handled (its t may have been
  -- tolerance ahead of the clock): a record that expires sooner lets a captured copy run again.
  it("tolerance 0 turns the time check off, and says what that gives up", function()
    local r, lines = new_router({ tolerance = 0 })
    assert.are.equal(200, r:handle(BOOKED, signed(BOOKED, NOW - 86400)).status)
    assert.truthy(lines[1]:find("^warn: webhook.router: tolerance = 0 accepts a signature of any"
      .. " age: a captured delivery runs again once its record expires"), lines[1])
  end)

  it("refuses a ttl shorter than twice the tolerance", function()
    local cases = {
      { { ttl = 60 }, "the journal's ttl (60 s) is shorter than twice the tolerance (300 s)" },
      { { ttl = 599 }, "make ttl at least 600 s or the tolerance at most 299.5 s" },
      { { ttl = 100, tolerance = 60 }, "the journal's ttl (100 s) is shorter than twice the"
        .. " tolerance (60 s)" },
      { { journal = journal_module.memory({ ttl = 60 }) }, "the journal's ttl (60 s)" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(new_router, case[1])
      assert.is_false(ok)
      assert.truthy(err:find(case[2], 1, true), err)
    end
    assert.are.equal(200, new_router({ ttl = 600 }):handle(BOOKED, signed(BOOKED)).status)
    assert.are.equal(200, new_router({ ttl = 100, tolerance = 50 }):handle(BOOKED,
      signed(BOOKED)).status)
    -- without a signature there is no replay window to cover
    assert.are.equal(200, webhook.router({ verify = false, ttl = 1 }):handle(BOOKED).status)
  end)

  it("a captured delivery replayed while it still verifies finds its record", function()
    local clock = NOW
    local r = new_router({ ttl = 600, now = function() return clock end })
    -- signed 300 s ahead of the clock: it verifies until NOW + 600
    local header = signed(BOOKED, NOW + 300)
    assert.are.equal(200, r:handle(BOOKED, header).status)
    clock = NOW + 599
    local res = r:handle(BOOKED, header)
    assert.are.equal(200, res.status)
    assert.truthy(res.body:find('"duplicate"', 1, true), res.body)
    clock = NOW + 601
    assert.are.equal(401, r:handle(BOOKED, header).status)   -- expired
  end)

  it("verify = false skips the signature", function()
    local r = new_router({ verify = false })
    assert.are.equal(200, r:handle(BOOKED, {}).status)
    assert.are.equal(200, new_router({ verify = false }):handle(BOOKED).status)
  end)

  it("checks the signature before parsing (an unsigned bad body is 401, not 400)", function()
    local res = new_router():handle("{not json", {})
    assert.are.equal(401, res.status)
  end)
end)

describe("router: size limit", function()
  local padded_to = function(size)
    return BOOKED .. string.rep(" ", size - #BOOKED)
  end
  local cases = {
    { "one byte over the default 1 MiB", nil, padded_to(1024 * 1024 + 1), 413 },
    { "exactly the default 1 MiB", nil, padded_to(1024 * 1024), 200 },
    { "one byte over a max_size of 2000", 2000, padded_to(2001), 413 },
    { "exactly a max_size of 2000", 2000, padded_to(2000), 200 },
  }
  for _, case in ipairs(cases) do
    it(case[1] .. " -> " .. case[4], function()
      local r = new_router({ max_size = case[2] })
      local calls = recorder(r, { "*" })
      local res = r:handle(case[3], signed(case[3]))
      assert.are.equal(case[4], res.status)
      if case[4] == 413 then
        local doc = decode(res)
        assert.are.equal("too_large", doc.error)
        assert.are.equal(case[2] or 1024 * 1024, doc.max_size)
        assert.are.same({}, calls)
      else
        assert.are.same({ "*:guest_booked" }, calls)
      end
    end)
  end

  it("answers 413 even before checking the signature", function()
    local body = padded_to(3000)
    assert.are.equal(413, new_router({ max_size = 2000 }):handle(body, {}).status)
  end)
end)
