-- The router: every fixture and signature failure to its status, exactly-once dispatch,
-- failing handlers and stores, handler scripts.
local webhook = require "jicoo.webhook"
local store = require "jicoo.webhook.store"
local journal_module = require "jicoo.webhook.journal"
local cjson = require "cjson"   -- an independent reader of the response bodies
local support = require "support"

local SECRET = "whsec_router_spec"
local NOW = 1700000000
local SIGNATURE = "Jicoo-Webhook-Signature"

local function fixture(folder, name)
  return support.read(support.fixtures .. "/" .. folder .. "/" .. name)
end

local function signed(body, t, secret)
  return { [SIGNATURE] = webhook.sign(secret or SECRET, body, t or NOW) }
end

-- A router on a fixed clock that records its log lines instead of writing them.
local function new_router(opts)
  opts = opts or {}
  local lines = {}
  if opts.verify ~= false then
    opts.secrets = opts.secrets or SECRET
  end
  opts.now = opts.now or NOW
  opts.log = opts.log or function(level, message)
    lines[#lines + 1] = level .. ": " .. message
  end
  return webhook.router(opts), lines
end

-- Records each handler call as "<label>:<event>".
local function recorder(router, names)
  local calls = {}
  for _, name in ipairs(names) do
    router:on(name, function(ev)
      calls[#calls + 1] = name .. ":" .. ev.event
    end)
  end
  return calls
end

local function decode(res)
  return cjson.decode(res.body)
end

local BOOKED = fixture("lenient", "portal_guest_booked.json")

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

describe("router: exactly once", function()
  it("runs the handlers of a delivery sent twice once; the second answer is 200 duplicate", function()
    local r = new_router()
    local calls = recorder(r, { "guest_booked", "*" })
    local first = r:handle(BOOKED, signed(BOOKED))
    local second = r:handle(BOOKED, signed(BOOKED, NOW + 60))   -- a retry, signed again
    assert.are.equal(200, first.status)
    assert.are.equal("handled", decode(first).result)
    assert.are.equal(200, second.status)
    assert.are.equal("duplicate", decode(second).result)
    assert.is_true(second.duplicate)
    assert.are.same({ "guest_booked:guest_booked", "*:guest_booked" }, calls)
  end)

  it("runs two different changes of one booking both", function()
    local r = new_router()
    local calls = recorder(r, { "*" })
    local rescheduled = fixture("lenient", "portal_guest_rescheduled.json")
    local later = BOOKED:gsub('"createdAt": "2020%-11%-23T17:51:19.000Z"',
      '"createdAt": "2020-11-23T18:00:00.000Z"', 1)
    assert.are_not.equal(BOOKED, later)
    for _, body in ipairs({ BOOKED, rescheduled, later, BOOKED }) do
      assert.are.equal(200, r:handle(body, signed(body)).status)
    end
    assert.are.same({ "*:guest_booked", "*:guest_rescheduled", "*:guest_booked" }, calls)
  end)

  it("takes the same event in another JSON layout for the same delivery", function()
    -- Same event, uid and createdAt: the key says it is the same delivery.
    local r = new_router()
    local calls = recorder(r, { "*" })
    local full = fixture("valid", "strict_guest_booked_full.json")
    assert.are.equal("handled", decode(r:handle(BOOKED, signed(BOOKED))).result)
    assert.are.equal("duplicate", decode(r:handle(full, signed(full))).result)
    assert.are.equal(1, #calls)
  end)

  it("a copy arriving while the first is still running does not run the handlers; the memory"
      .. " journal (not durable) answers it 503 so that the sender tries again", function()
    local r = new_router()
    local runs, nested = 0, nil
    r:on("guest_booked", function()
      runs = runs + 1
      if runs == 1 then
        -- The sender's retry arrives before this handler has finished.
        nested = r:handle(BOOKED, signed(BOOKED))
      end
    end)
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.equal(1, runs)
    assert.are.equal(503, nested.status)
    assert.are.equal("in_progress", decode(nested).error)
    assert.are.equal(300, nested.retry_after)   -- the lease's length: nothing has moved the clock
    -- Once it is done, the next copy is a duplicate.
    assert.are.equal("duplicate", decode(r:handle(BOOKED, signed(BOOKED))).result)
  end)

  it("uses ev:key() as the store key, with the router's ttl", function()
    local seen = {}
    local spy_store = {
      add = function(_, key, ttl)
        seen[#seen + 1] = { key, ttl }
        return true
      end,
      delete = function() return true end,
    }
    local r = new_router({ store = spy_store, ttl = 3600 })
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.same({ { "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z", 3600 } }, seen)
    assert.are.equal(seen[1][1], res.key)
  end)
end)

describe("router: failures", function()
  it("a handler that raises: the others still run, 500, on_error told; the retry runs only it", function()
    local r = new_router()
    local order, reported = {}, {}
    r:on("guest_booked", function()
      order[#order + 1] = "first"
    end)
    local fail = true
    r:on("guest_booked", function()
      order[#order + 1] = "failing"
      if fail then
        error("boom: mail server down")
      end
    end)
    r:on("*", function()
      order[#order + 1] = "any"
    end)
    r:on_error(function(message, ev, ctx)
      reported[#reported + 1] = { message = message, event = ev.event, key = ctx.key }
    end)

    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(500, res.status)
    local doc = decode(res)
    assert.are.equal("handler_failed", doc.error)
    assert.are.equal(1, doc.failed)
    assert.are.same({ "first", "failing", "any" }, order)
    assert.are.equal(1, #reported)
    assert.truthy(reported[1].message:find("boom: mail server down", 1, true))
    assert.truthy(reported[1].message:find("stack traceback", 1, true))
    assert.are.equal("guest_booked", reported[1].event)
    assert.are.equal("guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z", reported[1].key)
    assert.are.equal("handler", res.errors[1].stage)
    assert.truthy(res.errors[1].message:find("boom", 1, true))
    assert.is_false(res.handlers[2].ok)

    -- The sender's retry runs the one that failed, not those that succeeded, and succeeds now.
    fail = false
    res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.same({ "first", "failing", "any", "failing" }, order)
    -- Handled now: a third delivery is a duplicate.
    assert.are.equal("duplicate", decode(r:handle(BOOKED, signed(BOOKED))).result)
  end)

  it("catches errors that are not strings", function()
    local r = new_router()
    r:on("*", function()
      error({ reason = "table error" })
    end)
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(500, res.status)
  end)

  it("logs a handler failure when no on_error is registered", function()
    local r, lines = new_router()
    r:on("*", function()
      error("kaput")
    end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("error: .*kaput"))
  end)

  it("an on_error that raises is logged and does not change the answer", function()
    local r, lines = new_router()
    r:on("*", function() error("first") end)
    r:on_error(function() error("reporter broken") end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("reporter broken", 1, true))
  end)

  local broken_stores = {
    { "returns nil, err", function() return nil, "connection refused" end, "connection refused" },
    { "raises", function() error("redis exploded") end, "redis exploded" },
    { "returns nothing", function() end, "store:add returned nil" },
  }
  for _, case in ipairs(broken_stores) do
    it("a store that " .. case[1] .. " -> 500 and no handler runs", function()
      local r = new_router({ store = { add = case[2], delete = function() return true end } })
      local calls = recorder(r, { "*" })
      local reported = {}
      r:on_error(function(message) reported[#reported + 1] = message end)
      local res = r:handle(BOOKED, signed(BOOKED))
      assert.are.equal(500, res.status)
      assert.are.equal("store_failed", decode(res).error)
      assert.are.same({}, calls)
      assert.are.equal(1, #reported)
      assert.truthy(reported[1]:find(case[3], 1, true))
      assert.are.equal("store", res.errors[1].stage)
    end)
  end

  it("a store that says false -> 200 duplicate, no handler runs", function()
    local r = new_router({ store = { add = function() return false end, delete = function() end } })
    local calls = recorder(r, { "*" })
    local res = r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(200, res.status)
    assert.are.equal("duplicate", decode(res).result)
    assert.are.same({}, calls)
  end)

  it("releases the claim through store:delete when a handler fails", function()
    local deleted = {}
    local memory = store.memory()
    local spy = {
      add = function(_, key, ttl) return memory:add(key, ttl) end,
      delete = function(_, key)
        deleted[#deleted + 1] = key
        return memory:delete(key)
      end,
    }
    local r = new_router({ store = spy })
    r:on("*", function() error("no") end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.same({ "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z" }, deleted)
  end)

  it("a failing release is logged, the answer stays 500", function()
    local r, lines = new_router({ store = {
      add = function() return true end,
      delete = function() return nil, "timeout" end,
    } })
    r:on("*", function() error("no") end)
    assert.are.equal(500, r:handle(BOOKED, signed(BOOKED)).status)
    assert.truthy(table.concat(lines, "\n"):find("cannot release.*timeout"))
  end)
end)

describe("router: handlers and ctx", function()
  it("runs handlers in registration order, named and '*' alike", function()
    local r = new_router()
    local calls = recorder(r, { "*", "guest_booked", "host_cancelled", "*", "guest_booked",
      "host_cancelled", "*" })
    r:handle(BOOKED, signed(BOOKED))
    assert.are.same({ "*:guest_booked", "guest_booked:guest_booked", "*:guest_booked",
      "guest_booked:guest_booked", "*:guest_booked" }, calls)
  end)

  it("reads a handler's setting from ctx.config, else the environment, else the default", function()
    local r = new_router({ config = { channel = "#team", empty = "" } })
    local got
    r:on("guest_booked", function(_, ctx)
      got = {
        ctx:setting("channel", "HOME", "#default"),        -- config wins over the environment
        ctx:setting("empty", "HOME", "#default"),          -- an empty value counts as unset
        ctx:setting("missing", "JICOO_SURELY_UNSET_VARIABLE", "#default"),
        ctx:setting("missing", nil, "#default"),
      }
    end)
    assert.are.equal(200, r:handle(BOOKED, signed(BOOKED)).status)
    assert.are.same({ "#team", os.getenv("HOME"), "#default", "#default" }, got)
  end)

  it("gives handlers the parsed event and a ctx with headers, body, time, key, log, config", function()
    local r, lines = new_router({ config = { channel = "#team" } })
    local got
    r:on("guest_booked", function(ev, ctx)
      got = { ev = ev, ctx = ctx }
      ctx.log("booked %s", ev.object.uid)
      ctx.log.warn("careful")
      ctx.log("100% literal")
    end)
    local headers = signed(BOOKED)
    r:handle(BOOKED, headers)
    assert.are.equal("ACDADADASS", got.ev.object.uid)
    assert.are.equal("John Doe", got.ev.object.contact.name)
    assert.are.equal(headers, got.ctx.headers)
    assert.are.equal(BOOKED, got.ctx.body)
    assert.are.equal(NOW, got.ctx.received_at)
    assert.are.equal(got.ev:key(), got.ctx.key)
    assert.are.equal("#team", got.ctx.config.channel)
    assert.are.equal(3, #lines)
    assert.truthy(lines[1]:match("^info: guest_booked handler at .*router_spec%.lua:%d+: booked ACDADADASS$"),
      lines[1])
    assert.truthy(lines[2]:match("^warn: .*: careful$"), lines[2])
    assert.truthy(lines[3]:match(": 100%% literal$"), lines[3])
  end)

  it("gives ctx.log a function for each level, the same one each time, and nothing else", function()
    local r, lines = new_router()
    local same, other
    r:on("guest_booked", function(_, ctx)
      for _, level in ipairs({ "debug", "info", "warn", "error" }) do
        ctx.log[level]("at %s", level)
      end
      same = ctx.log.warn == ctx.log.warn
      other = ctx.log.notice
    end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(4, #lines)
    for i, level in ipairs({ "debug", "info", "warn", "error" }) do
      assert.truthy(lines[i]:match("^" .. level .. ": .*: at " .. level .. "$"), lines[i])
    end
    assert.is_true(same)
    assert.is_nil(other)
  end)

  it("takes now from a function", function()
    local t = NOW + 5
    local r = new_router({ now = function() return t end })
    local seen
    r:on("*", function(_, ctx) seen = ctx.received_at end)
    r:handle(BOOKED, signed(BOOKED))
    assert.are.equal(NOW + 5, seen)
  end)

  it("writes valid JSON response bodies whatever the message holds", function()
    -- An undocumented key with a control character, a quote and a slash, rejected by name.
    local body = BOOKED:gsub("^{", '{"we\\u0001ird\\"/key\\u00e9": 1,', 1)
    local res = new_router({ verify = false, unknown_keys = "reject" }):handle(body)
    assert.are.equal(400, res.status)
    local doc = decode(res)
    assert.are.equal("unknown_key", doc.code)
    assert.are.equal("/we\1ird\"~1key\195\169", doc.path)
  end)

  local misuse = {
    { "an unknown option", function() webhook.router({ verify = false, secret = "s" }) end,
      "unknown option 'secret'" },
    { "no secrets", function() webhook.router({}) end, "secrets" },
    { "an empty secret list", function() webhook.router({ secrets = {} }) end, "secrets" },
    { "a bad parse level", function() webhook.router({ verify = false, level = "loose" }) end,
      "level" },
    { "a store without delete", function()
      webhook.router({ verify = false, store = { add = function() end } })
    end, "store" },
    { "a negative ttl", function() webhook.router({ verify = false, ttl = -5 }) end, "ttl" },
    { "on with a non-function", function() new_router():on("guest_booked", "nope") end,
      "handler must be a function" },
    { "on with an empty name", function() new_router():on("", function() end) end, "event name" },
    { "on_error with a non-function", function() new_router():on_error(42) end, "on_error" },
    { "handle with a non-string body", function() new_router():handle(nil, {}) end,
      "body must be a string" },
    { "handle with non-table headers", function() new_router():handle(BOOKED, "h") end,
      "headers must be a table" },
    { "load with a non-string dir", function() new_router():load(7) end, "dir" },
  }
  for _, case in ipairs(misuse) do
    it("raises on " .. case[1], function()
      local ok, err = pcall(case[2])
      assert.is_false(ok)
      assert.truthy(tostring(err):find(case[3], 1, true), tostring(err))
    end)
  end
end)

describe("router: handler scripts", function()
  local dir

  local function write_script(name, source)
    support.write(dir .. "/" .. name, source)
  end

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(support.run("mkdir -p " .. support.quote(dir)))
  end)

  after_each(function()
    support.run("rm -rf " .. support.quote(dir))
    rawset(_G, "jicoo_spec_calls", nil)
  end)

  -- Scripts report to the spec through ctx.config, the one table they share on purpose.
  local function run_scripts(body)
    local calls = {}
    local r, lines = new_router({ verify = false, config = { calls = calls } })
    local loaded, err, failures = r:load(dir)
    local res = body and r:handle(body)
    return { loaded = loaded, err = err, failures = failures, res = res, calls = calls,
      lines = lines }
  end

  it("loads <event>.lua and any.lua (a function or a list of functions), any.lua first", function()
    write_script("guest_booked.lua", [[
      return function(ev, ctx) table.insert(ctx.config.calls, "booked " .. ev.object.uid) end]])
    write_script("any.lua", [[
      return {
        function(ev, ctx) table.insert(ctx.config.calls, "any1 " .. ev.event) end,
        function(ev, ctx) table.insert(ctx.config.calls, "any2 " .. ev.event) end,
      }]])
    write_script("host_cancelled.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "host_cancelled") end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(4, out.loaded)
    assert.is_nil(out.err)
    assert.are.equal(200, out.res.status)
    assert.are.same({ "any1 guest_booked", "any2 guest_booked", "booked ACDADADASS" }, out.calls)
    assert.are.equal(dir .. "/any.lua#1", out.res.handlers[1].handler)
    assert.are.equal(dir .. "/guest_booked.lua", out.res.handlers[3].handler)
  end)

  it("keeps each script's globals to itself", function()
    write_script("guest_booked.lua", [[
      counter = 1
      _G.leaked_through_G = true
      return function(_, ctx)
        counter = counter + 1
        handler_global = "set in a handler"
        table.insert(ctx.config.calls, "booked counter=" .. counter)
      end]])
    write_script("any.lua", [[
      return function(_, ctx)
        table.insert(ctx.config.calls, "any sees counter=" .. tostring(counter)
          .. " handler_global=" .. tostring(handler_global)
          .. " leaked=" .. tostring(leaked_through_G))
      end]])
    write_script("guest_cancelled.lua", [[
      string_backup = string
      return function() end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(200, out.res.status)
    assert.are.same({ "any sees counter=nil handler_global=nil leaked=nil", "booked counter=2" },
      out.calls)
    for _, name in ipairs({ "counter", "handler_global", "leaked_through_G", "string_backup" }) do
      assert.is_nil(rawget(_G, name), name)
    end
  end)

  it("reports every broken script naming its file, and still loads the others", function()
    write_script("guest_booked.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "booked") end]])
    write_script("host_cancelled.lua", "return function(ev, ctx)\n  if then\nend\n")
    write_script("guest_cancelled.lua", "error('cannot connect to the room service')\n")
    write_script("guest_rescheduled.lua", "return 42\n")
    write_script("host_rescheduled.lua", "return { function() end, 'two' }\n")
    local out = run_scripts(BOOKED)
    assert.is_nil(out.loaded)
    assert.are.equal(4, #out.failures)
    local by_file = {}
    for _, failure in ipairs(out.failures) do
      by_file[failure.file:match("[^/]+$")] = failure.message
    end
    assert.truthy(by_file["host_cancelled.lua"]:find(dir .. "/host_cancelled.lua:2:", 1, true))
    assert.truthy(by_file["guest_cancelled.lua"]:find("cannot connect to the room service", 1, true))
    assert.truthy(by_file["guest_cancelled.lua"]:find(dir .. "/guest_cancelled.lua:1:", 1, true))
    assert.truthy(by_file["guest_rescheduled.lua"]:find("returns number, expected a function", 1, true))
    assert.truthy(by_file["host_rescheduled.lua"]:find("item 2", 1, true))
    for name in pairs(by_file) do
      assert.truthy(out.err:find(name, 1, true), name)
    end
    assert.are.equal(200, out.res.status)
    assert.are.same({ "booked" }, out.calls)
  end)

  it("leaves helpers (_name.lua), hidden files and other files alone; SCRIPT_DIR finds helpers", function()
    write_script("_helper.lua", "error('a helper must not be loaded as a script')\n")
    write_script(".hidden.lua", "error('hidden files are not scripts')\n")
    write_script("notes.txt", "not lua")
    write_script("_format.lua", "return { shout = function(s) return s:upper() end }\n")
    write_script("guest_booked.lua", [[
      local format = dofile(SCRIPT_DIR .. "_format.lua")
      return function(ev, ctx) table.insert(ctx.config.calls, format.shout(ev.object.contact.name)) end]])
    local out = run_scripts(BOOKED)
    assert.are.equal(1, out.loaded)
    assert.are.same({ "JOHN DOE" }, out.calls)
  end)

  it("loads a script for an event name it does not know, with a warning", function()
    write_script("guest_assigned.lua", [[
      return function(_, ctx) table.insert(ctx.config.calls, "assigned") end]])
    local out = run_scripts(fixture("lenient", "drift.json"))
    assert.are.equal(1, out.loaded)
    assert.are.same({ "assigned" }, out.calls)
    assert.truthy(out.lines[1]:find("^warn: .*guest_assigned.lua: 'guest_assigned' is not a known"))
  end)

  it("reports a folder that does not exist", function()
    local r = new_router({ verify = false })
    local loaded, err = r:load(dir .. "/nope")
    assert.is_nil(loaded)
    assert.truthy(err:find(dir .. "/nope", 1, true))
  end)

  it("a script error at dispatch time is a failing handler like any other", function()
    write_script("guest_booked.lua", "return function() local t = nil; return t.x end\n")
    write_script("any.lua", "return function(_, ctx) table.insert(ctx.config.calls, 'any') end\n")
    local out = run_scripts(BOOKED)
    assert.are.equal(500, out.res.status)
    assert.are.same({ "any" }, out.calls)
    assert.truthy(out.res.errors[1].message:find("guest_booked.lua:1:", 1, true))
  end)
end)

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

    -- The service is back; an operator rearms the delivery: it runs once more, the crm alone.
    fail_left.crm = 0
    assert.is_truthy(r.journal:rearm(KEY, clock))
    assert.are.equal(1, (r:run_due()))
    assert.are.same({ ledger = 1, crm = 4 }, runs)
    assert.are.equal("done", r.journal:get(KEY).state)
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
