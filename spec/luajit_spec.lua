-- LuaJIT's paths (luajit.lua: the core's tape mode through the FFI, tables built by generated
-- Lua) against the classic C API's core.parse: the same tables with the same metatables, or
-- a decline that core.parse then answers. Never a delivery accepted that core.parse refuses.
-- construct (core.verify, then the tape) against core.construct.
local webhook = require "jicoo.webhook"
local core = require "jicoo.webhook.core"
local support = require "support"

local on_luajit = rawget(_G, "jit") ~= nil

-- Where a and b differ (same values, same metatables), or nil.
local function difference(a, b, where)
  where = where or ""
  if type(a) ~= type(b) then
    return where .. ": " .. type(a) .. " vs " .. type(b)
  end
  if type(a) ~= "table" then
    return a ~= b and (where .. ": " .. tostring(a) .. " vs " .. tostring(b)) or nil
  end
  if getmetatable(a) ~= getmetatable(b) then
    return where .. ": another metatable"
  end
  for k, v in pairs(a) do
    local d = difference(v, b[k], where .. "/" .. tostring(k))
    if d then
      return d
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return where .. "/" .. tostring(k) .. ": only in core.parse's result"
    end
  end
  return nil
end

local function bodies()
  local list = {}
  for _, folder in ipairs({ "valid", "lenient", "invalid" }) do
    for _, name in ipairs(support.list(support.fixtures .. "/" .. folder, "%.json$")) do
      list[#list + 1] = {
        name = folder .. "/" .. name,
        folder = folder,
        body = support.read(support.fixtures .. "/" .. folder .. "/" .. name),
      }
    end
  end
  return list
end

describe("LuaJIT's paths", function()
  if not on_luajit then
    it("is not used here: webhook.parse, verify and construct are the core's", function()
      assert.are.equal(core.parse, webhook.parse)
      assert.are.equal(core.verify, webhook.verify)
      assert.are.equal(core.construct, webhook.construct)
    end)
    return
  end

  local luajit = require "jicoo.webhook.payload.tape"

  -- The fast path's answer and core.parse's agree on body at level (a failure names where).
  local function agree(body, level)
    local fast = luajit.parse_fast(body, level == "strict")
    local classic, msg = core.parse(body, { level = level })
    if fast and not classic then
      return "the fast path accepts what core.parse refuses: " .. msg
    end
    if fast then
      return difference(fast, classic)
    end
    return nil
  end

  it("is what webhook.parse and construct call (verify is core.verify)", function()
    assert.are.equal(luajit.parse, webhook.parse)
    assert.is_nil(luajit.verify)
    assert.are.equal(core.verify, webhook.verify)
    assert.are.equal(luajit.construct, webhook.construct)
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local header = webhook.sign("secret", body)
    local event = assert(webhook.construct(body, header, "secret", { level = "strict", tolerance = 0 }))
    assert.is_nil(difference(event, core.parse(body)))
  end)

  it("verifies with core.verify and parses on the tape for construct, answering as core.construct", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local t = 1662520836
    local header = webhook.sign("secret", body, t)
    local event = assert(webhook.construct(body, header, "secret", { now = t, level = "strict" }))
    assert.is_nil(difference(event, core.parse(body)))
    assert.is_nil(difference(event, core.construct(body, header, "secret", { now = t })))
    local broken = body:gsub('"cancel"', '"pending"')
    local broken_header = webhook.sign("secret", broken, t)
    local fresh, fresh_broken = webhook.sign("secret", body), webhook.sign("secret", broken)
    local drift = support.read(support.fixtures .. "/lenient/drift.json")
    local unparsable = body .. ","
    local cases = {
      { body, header, "other", { now = t } }, { body, header, "secret", { now = t + 301 } },
      { body, "t=1,v1=zz", "secret" }, { broken, broken_header, "secret", { now = t, level = "strict" } },
      { body, header, { "secret" }, { now = t } }, { body, { header }, "secret", { now = t } },
      { body, header, "secret", { now = t, unknown_keys = "drop" } }, { body, header, "secret", { now = t } },
      -- each path: no options, a level only, the signature's options only, both
      { body, fresh, "secret" }, { body, fresh, "secret", { level = "strict" } }, { body, fresh, "secret", {} },
      { body, header, "secret", { now = t, tolerance = 300 } }, { body, header, "secret", { tolerance = 0 } },
      { body, header, "secret", { level = "strict" } }, { body, header, "secret", { now = t, level = "lenient" } },
      { broken, fresh_broken, "secret", { level = "strict" } }, { broken, fresh_broken, "secret", { level = "lenient" } },
      { drift, webhook.sign("secret", drift, t), "secret", { now = t } },
      { unparsable, webhook.sign("secret", unparsable, t), "secret", { now = t } },
      { unparsable, webhook.sign("secret", unparsable), "secret", { level = "strict" } },
      { body, nil, "secret" }, { body, "", "secret", { now = t } },
    }
    for i, c in ipairs(cases) do
      local a = { webhook.construct(c[1], c[2], c[3], c[4]) }
      local b = { core.construct(c[1], c[2], c[3], c[4]) }
      assert.is_nil(difference(a, b), "case " .. i)
    end
    for _, opts in ipairs({ { now = t, tolerance = -1 }, { now = "x" }, { now = 1 / 0 }, { now = t, level = "loose" },
      { tolerance = 0 / 0 }, { level = 5 }, { bogus = true }, 5, "strict", { [1] = true },
      { now = t, level = "strict", tolerance = -1 }, { level = "strict", max_size = 0 } }) do
      for _, h in ipairs({ header, "t=1,v1=zz" }) do -- misuse raises even when the signature fails
        local ok_a, err_a = pcall(core.construct, body, h, "secret", opts)
        local ok_b, err_b = pcall(webhook.construct, body, h, "secret", opts)
        assert.is_false(ok_a)
        assert.are.same({ ok_a, err_a }, { ok_b, err_b })
      end
    end
  end)

  it("verifies as core.verify does, whatever the arguments", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local t = 1662520836
    local header = webhook.sign("secret", body, t)
    local cases = {
      { body, header, "secret", { now = t } }, { body, header, "secret", { now = t + 300 } },
      { body, header, "secret", { now = t + 301 } }, { body, header, "secret", { now = t + 301, tolerance = 0 } },
      { body, header, "other", { now = t } }, { body .. " ", header, "secret", { now = t } },
      { body, header .. ",v1=" .. ("0"):rep(64), "secret", { now = t } }, { body, "t=1", "secret" },
      { body, "", "secret" }, { body, nil, "secret" }, { body, { header }, "secret", { now = t } },
      { body, header, { "other", "secret" }, { now = t } }, { body, header, "secret" },
    }
    for i, c in ipairs(cases) do
      assert.are.same({ core.verify(c[1], c[2], c[3], c[4]) }, { webhook.verify(c[1], c[2], c[3], c[4]) },
        "case " .. i)
    end
    for _, opts in ipairs({ { now = t, tolerance = -1 }, { now = t, tolerance = 0 / 0 }, { now = 0 / 0 },
      { now = 1 / 0 }, { now = "x" }, { now = t, level = "strict" } }) do
      local ok_a, err_a = pcall(core.verify, body, header, "secret", opts)
      local ok_b, err_b = pcall(webhook.verify, body, header, "secret", opts)
      assert.is_false(ok_a)
      assert.are.same({ ok_a, err_a }, { ok_b, err_b })
    end
  end)

  it("builds every valid fixture itself (lenient ones at their level), as core.parse does", function()
    for _, fixture in ipairs(bodies()) do
      if fixture.folder ~= "invalid" then
        for _, level in ipairs(fixture.folder == "valid" and { "lenient", "strict" } or { "lenient" }) do
          local fast = luajit.parse_fast(fixture.body, level == "strict")
          assert(fast, fixture.name .. " at " .. level .. ": declined")
          assert.is_nil(difference(fast, core.parse(fixture.body, { level = level })))
        end
      end
    end
  end)

  it("agrees with core.parse on every fixture at both levels", function()
    for _, fixture in ipairs(bodies()) do
      for _, level in ipairs({ "lenient", "strict" }) do
        local problem = agree(fixture.body, level)
        assert(problem == nil, fixture.name .. " at " .. level .. ": " .. tostring(problem))
        local a, msg_a, info_a = webhook.parse(fixture.body, { level = level })
        local b, msg_b, info_b = core.parse(fixture.body, { level = level })
        assert.is_nil(difference(a, b))
        assert.are.equal(msg_b, msg_a)
        assert.are.same(info_b, info_a)
      end
    end
  end)

  it("agrees with core.parse on every one-byte change of the valid fixtures", function()
    local replacements = { "", '"', "\\", "{", "}", "[", "]", ",", ":", "x", "0", " ", "\0", "\128", "\255" }
    local checked, fast = 0, 0
    for _, fixture in ipairs(bodies()) do
      if fixture.folder == "valid" then
        local body = fixture.body
        for i = 1, #body do
          for _, r in ipairs(replacements) do
            local changed = body:sub(1, i - 1) .. r .. body:sub(i + 1)
            for _, level in ipairs({ "lenient", "strict" }) do
              local problem = agree(changed, level)
              assert(problem == nil, string.format("%s, byte %d -> %q at %s: %s", fixture.name, i, r,
                level, tostring(problem)))
              checked = checked + 1
              if luajit.parse_fast(changed, level == "strict") then
                fast = fast + 1
              end
            end
          end
        end
      end
    end
    -- many changes keep the delivery valid (a letter inside a text): they must take the fast path
    assert.is_true(checked > 50000 and fast > 1000, checked .. " checked, " .. fast .. " fast")
  end)

  it("decodes escaped strings into its slots, as core.parse does", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
      :gsub('"John Doe"', '"John \\u0044oe \\ud83d\\ude00 \\/\\\\\\"\\b\\f\\n\\r\\t\\u0000 \\u00e9\\u4f53"')
      :gsub('"cancel"', '"\\u0063ancel"')
      :gsub('"2022%-09%-01T17:00:00.000Z"', '"2022-09-01T17:00:00.000\\u005a"')
    local fast = assert(luajit.parse_fast(body, true))
    assert.are.equal('John Doe \240\159\152\128 /\\"\b\f\n\r\t\0 \195\169\228\189\147',
      fast.object.contact.name)
    assert.are.equal("cancel", fast.object.status)
    assert.are.equal("2022-09-01T17:00:00.000Z", fast.object.startedAt)
    assert.is_nil(difference(fast, core.parse(body, { level = "strict" })))
    -- an escaped value is checked like any other: an unknown status, a bad date-time
    local bad_values = {
      { '"cancel"', '"\\u0063ancelled"' },
      { '"2022%-08%-30T09:12:44.120Z"', '"2022-08-30\\u0020T09:12:44.120Z"' },
    }
    for _, bad in ipairs(bad_values) do
      local changed = support.read(support.fixtures .. "/valid/guest_cancelled.json"):gsub(bad[1], bad[2], 1)
      assert.is_nil(luajit.parse_fast(changed, true))
      assert.is_nil(core.parse(changed, { level = "strict" }))
    end
  end)

  it("declines an escaped key, and webhook.parse still reads it", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json"):gsub('"uid"', '"\\u0075id"')
    assert.is_nil(luajit.parse_fast(body, false))
    local event = assert(webhook.parse(body))
    assert.are.equal("ACDADADASS", event.object.uid)
    assert.is_nil(difference(event, core.parse(body)))
  end)

  it("keeps unknown keys holding a string or null, as core.parse does", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
      :gsub('"status"', '"meetingUrl": "https://meet.example.com/x", "note": "caf\\u00e9", "gone": null,\n    "status"')
    local fast = assert(luajit.parse_fast(body, false))
    assert.are.equal("https://meet.example.com/x", fast.object.meetingUrl)
    assert.are.equal("caf\195\169", fast.object.note)
    assert.is_nil(difference(fast, core.parse(body)))
    assert.is_nil(difference(assert(luajit.parse_fast(body, true)), core.parse(body, { level = "strict" })))
  end)

  it("declines a repeated unknown key, which core.parse reports", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
      :gsub('"status"', '"note": "a", "note": "b",\n    "status"')
    assert.is_nil(luajit.parse_fast(body, false))
    local event, msg = webhook.parse(body)
    assert.is_nil(event)
    assert.matches("^duplicate: /object/note", msg)
  end)

  it("declines an unknown key holding a list, and webhook.parse keeps, drops or refuses it as asked", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
      :gsub('"status"', '"extra": [1, true, null, {"a": 2.5}],\n    "status"')
    assert.is_nil(luajit.parse_fast(body, false))
    for _, mode in ipairs({ "keep", "drop", "reject" }) do
      local a, msg_a = webhook.parse(body, { unknown_keys = mode })
      local b, msg_b = core.parse(body, { unknown_keys = mode })
      assert.is_nil(difference(a, b))
      assert.are.equal(msg_b, msg_a)
    end
  end)

  it("reads a lone string as a one-item list at the lenient level, as core.parse does", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
      :gsub('"content": %b[]', '"content": "SNS"')
    local fast = assert(luajit.parse_fast(body, false))
    assert.are.same({ "SNS" }, fast.object.answers[1].content)
    assert.is_nil(difference(fast, core.parse(body)))
    assert.is_nil(luajit.parse_fast(body, true))
  end)

  it("gives a parse that starts while another one is building the classic path", function()
    -- A finalizer can do that; a count hook does it at a chosen moment: inside the builder.
    local outer_body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local inner_body = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json")
    local inner
    jit.off() -- hooks run in the interpreter only
    jit.flush()
    debug.sethook(function()
      local info = debug.getinfo(2, "S")
      if inner == nil and info and info.source == "=jicoo.webhook.payload.tape builders" then
        inner = false
        inner = webhook.parse(inner_body)
      end
    end, "", 1)
    local outer = webhook.parse(outer_body)
    debug.sethook()
    jit.on()
    assert.is_table(inner)
    assert.is_nil(difference(inner, core.parse(inner_body)))
    assert.is_nil(difference(outer, core.parse(outer_body)))
    assert(luajit.parse_fast(outer_body, false), "the fast path is free again")
  end)

  it("leaves the slots free after a build that raised", function()
    -- A finalizer or a hook may raise inside a builder (so may a memory error); the next parse
    -- must still take the fast path.
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    jit.off() -- hooks run in the interpreter only
    jit.flush()
    debug.sethook(function()
      local info = debug.getinfo(2, "S")
      if info and info.source == "=jicoo.webhook.payload.tape builders" then
        debug.sethook()
        error("raised inside a builder")
      end
    end, "", 1)
    local ok, err = pcall(luajit.parse_fast, body, false)
    debug.sethook()
    jit.on()
    assert.is_false(ok)
    assert.matches("raised inside a builder", err)
    for _ = 1, 3 do
      local fast = luajit.parse_fast(body, false)
      assert(fast, "the fast path is free again")
      assert.is_nil(difference(fast, core.parse(body)))
    end
  end)

  -- A delivery with many answers: n copies of the full fixture's one answer, some of them with an
  -- escaped string (decoded into the tape's own slots).
  local function with_answers(n)
    local body = support.read(support.fixtures .. "/valid/strict_guest_booked_full.json")
    local answer = '{"question": "How did you find out?", "content": ["SNS", "DM"]}'
    local answers = {}
    for i = 1, n do
      answers[i] = i % 7 == 0 and '{"question": "Q\\u00e9 ' .. i .. '", "content": ["a\\nb"]}' or answer
    end
    local replaced = body:gsub('"answers": %b[]', function()
      return '"answers": [' .. table.concat(answers, ", ") .. "]"
    end)
    return replaced
  end

  it("walks a delivery too big for one tape on a bigger tape, whatever its size", function()
    -- 8,192 slots take about 700 answers; 3,000 answers (about 200 KB) need four times as many
    for _, n in ipairs({ 500, 3000, 700, 9000 }) do
      local body = with_answers(n)
      for _, strict in ipairs({ false, true }) do
        local fast = luajit.parse_fast(body, strict)
        assert(fast, n .. " answers: the tape declined")
        assert.are.equal(n, #fast.object.answers)
        assert.are.equal("Qé 7", fast.object.answers[7].question)
        assert.is_nil(difference(fast, core.parse(body, { level = strict and "strict" or "lenient" })))
      end
    end
    -- over max_size: refused as core.parse refuses it, and the tape is free for the next one
    local over = with_answers(9000) .. string.rep(" ", core.options.max_size.default)
    assert.is_true(#over > core.options.max_size.default)
    assert.is_nil(luajit.parse_fast(over, false))
    local ok, msg, info = webhook.parse(over)
    assert.is_nil(ok)
    assert.are.equal("limit", info.code, msg)
    assert(luajit.parse_fast(with_answers(3), false), "the fast path is free again")
  end)

  it("declines through the tape what it cannot take (capacity, level)", function()
    local ffi = require "ffi"
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local parse = ffi.cast("const jicoo_tape *", core.tape.api).parse
    local slots = ffi.new("double[?]", ffi.C.JICOO_TAPE_CAPACITY)
    assert.is_true(parse(body, #body, 0, slots, ffi.C.JICOO_TAPE_CAPACITY) >= 0)
    assert.are.equal(ffi.C.JICOO_TAPE_FULL, parse(body, #body, 0, slots, 10))
    assert.are.equal(-1, parse(body, #body, 0, slots, -1))
    assert.are.equal(-1, parse(body, #body, #core.options.level.choices, slots, ffi.C.JICOO_TAPE_CAPACITY))
    assert.are.equal(-1, parse(body, #body, -1, slots, ffi.C.JICOO_TAPE_CAPACITY))
    -- the Event's first field, where the layout says it is
    local created = core.schema.Event.fields[1]
    assert.are.equal("createdAt", created.name)
    assert.are.equal("2022-08-30T09:12:44.120Z", body:sub(slots[0] + 1, slots[0] + slots[ffi.C.JICOO_TAPE_LENGTH]))
  end)

  local _, has_luacheck = support.run("command -v luacheck >/dev/null 2>&1")
  if has_luacheck then
    it("builds its tables with code luacheck passes (luajit.source())", function()
      local source = luajit.source()
      assert.matches("function build_Event%(T, base, at%)", source)
      assert.matches("function build_Event_drift%(T, base, at%)", source)
      local path = support.tmpname()
      support.write(path, source)
      local out, clean = support.run("luacheck --no-config --std luajit --max-line-length 110 --codes "
        .. support.quote(path) .. " 2>&1")
      os.remove(path)
      assert(clean, out)
    end)
  else
    pending("luacheck is not installed: the builders' source is not checked")
  end

  it("leaves options it does not know to core.parse, which checks them", function()
    local body = support.read(support.fixtures .. "/valid/guest_cancelled.json")
    for _, opts in ipairs({ { level = "loose" }, { max_size = 0 }, { bogus = true } }) do
      local ok_a, err_a = pcall(webhook.parse, body, opts)
      local ok_b, err_b = pcall(core.parse, body, opts)
      assert.is_false(ok_a)
      assert.is_false(ok_b)
      assert.are.equal(err_b, err_a)
    end
    local a, msg = webhook.parse(body, { max_size = 100 })
    assert.is_nil(a)
    assert.matches("^limit: ", msg)
    assert.has_error(function()
      webhook.parse(42)
    end)
  end)
end)
