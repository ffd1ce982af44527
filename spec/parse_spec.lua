-- webhook.parse: every fixture as its folder and expect.tsv say, options, and error reports.
local webhook = require "jicoo.webhook"
local cjson = require "cjson"
local support = require "support"

local fixtures = support.fixtures

-- cjson's reading of a document with its nulls removed: what parse gives by default.
local function without_nulls(value)
  if type(value) ~= "table" then
    return value
  end
  local copy = {}
  for k, v in pairs(value) do
    if v ~= cjson.null then
      copy[k] = without_nulls(v)
    end
  end
  return copy
end

-- A plain copy of a parsed value, without metatables.
local function plain(value)
  if type(value) ~= "table" then
    return value
  end
  local copy = {}
  for k, v in pairs(value) do
    copy[k] = plain(v)
  end
  return copy
end

-- Math values compare by value, but 5.3+ has float and integer subtypes: cjson gives floats.
local function same_numbers(value)
  if type(value) == "number" then
    return value + 0.0
  elseif type(value) == "table" then
    local copy = {}
    for k, v in pairs(value) do
      copy[k] = same_numbers(v)
    end
    return copy
  end
  return value
end

local function assert_rejects(body, opts, code, path)
  local ev, msg, info = webhook.parse(body, opts)
  assert.is_nil(ev)
  assert.are.equal(code, info.code, msg)
  assert.are.equal(path, info.path, msg)
  assert.is_true(msg:sub(1, #code + 1) == code .. ":", msg)
  if path and path ~= "" then
    assert.is_truthy(msg:find(path, 1, true), msg)
  end
  assert.is_true(math.type == nil or math.type(info.offset) == "integer")
  assert.is_true(info.offset >= 0 and info.offset <= #body, msg)
  return msg, info
end

describe("parse", function()
  describe("valid fixtures", function()
    for _, name in ipairs(support.list(fixtures .. "/valid", "%.json$")) do
      local body = support.read(fixtures .. "/valid/" .. name)
      for _, level in ipairs({ "lenient", "strict" }) do
        it(name .. " at the " .. level .. " level equals cjson's reading, typed", function()
          local ev, msg = webhook.parse(body, { level = level })
          assert.is_truthy(ev, msg)
          assert.are.same(same_numbers(without_nulls(cjson.decode(body))), plain(ev))
          assert.are.equal("jicoo.webhook.Event", getmetatable(ev).__name)
          assert.are.equal("jicoo.webhook.Booking", getmetatable(ev.object).__name)
          assert.are.equal("jicoo.webhook.Contact", getmetatable(ev.object.contact).__name)
          assert.are.equal("jicoo.webhook.Tracking", getmetatable(ev.object.tracking).__name)
          for _, answer in ipairs(ev.object.answers) do
            assert.are.equal("jicoo.webhook.Answer", getmetatable(answer).__name)
          end
          assert.is_true(ev:is_known())
        end)
      end
    end
  end)

  describe("lenient fixtures", function()
    for _, row in ipairs(support.expectations("lenient")) do
      local body = support.read(fixtures .. "/lenient/" .. row.file)
      it(row.file .. " passes the lenient level", function()
        local ev, msg = webhook.parse(body)
        assert.is_truthy(ev, msg)
        assert.are.equal(cjson.decode(body).object.uid, ev.object.uid)
        assert.is_nil(ev.object.cancelReason)
      end)
      it(row.file .. " fails the strict level with " .. row.code .. " at " .. row.path, function()
        assert_rejects(body, { level = "strict" }, row.code, row.path)
      end)
    end

    it("drift.json keeps the drift readable", function()
      local ev = assert(webhook.parse(support.read(fixtures .. "/lenient/drift.json")))
      assert.are.equal("guest_assigned", ev.event)
      assert.is_false(ev:is_known())
      assert.is_nil(ev:kind())
      assert.are.equal("request", ev.object.status)
      assert.are.same({ "Acme K.K." }, ev.object.answers[1].content)
      assert.are.equal("+81-3-0000-0000", ev.object.contact.phoneNumber)
      assert.are.equal("abc123", ev.object.tracking.utm_id)
      assert.are.equal("https://meet.example.com/x", ev.object.meetingUrl)
    end)
  end)

  describe("invalid fixtures", function()
    local rows = support.expectations("invalid")
    local listed = {}
    for _, row in ipairs(rows) do
      listed[row.file] = true
      local body = support.read(fixtures .. "/invalid/" .. row.file)
      for _, level in ipairs({ "lenient", "strict" }) do
        it(row.file .. " at the " .. level .. " level is " .. row.code .. " at " .. tostring(row.path), function()
          assert_rejects(body, { level = level }, row.code, row.path)
        end)
      end
    end
    it("every invalid fixture is listed in expect.tsv", function()
      for _, name in ipairs(support.list(fixtures .. "/invalid", "%.json$")) do
        assert.is_true(listed[name], name)
      end
    end)
  end)

  describe("rejections built from a valid delivery", function()
    local base = support.read(fixtures .. "/valid/strict_guest_booked_full.json")
    -- Each case edits the delivery with a plain-text substitution.
    local cases = {
      { "an unknown status at the strict level", '"status": "open"', '"status": "pending"',
        "strict", "enum", "/object/status" },
      { "a list given as a string at the strict level", '"content": [\n          "SNS",\n          "DM"\n        ]',
        '"content": "SNS"', "strict", "type", "/object/answers/0/content" },
      { "an answer that is not an object", '"answers": [\n      {', '"answers": [ 7, {',
        "lenient", "type", "/object/answers/0" },
      { "tracking null", '"tracking": {', '"tracking": null, "x": {', "lenient", "type", "/object/tracking" },
      { "a contact email as a number", '"email": "example@example.com"', '"email": 5',
        "lenient", "type", "/object/contact/email" },
      { "an escaped key repeating a known one", '"uid": "ACDADADASS"', '"uid": "A", "\\u0075id": "B"',
        "lenient", "duplicate", "/object/uid" },
      { "an unknown key twice", '"uid": "ACDADADASS"', '"uid": "A", "x": 1, "x": 2',
        "lenient", "duplicate", "/object/x" },
      { "an unknown key twice, the first null", '"uid": "ACDADADASS"', '"uid": "A", "x": null, "x": 2',
        "lenient", "duplicate", "/object/x" },
      { "a nested unknown key twice", '"uid": "ACDADADASS"', '"uid": "A", "x": {"y": [{"z": 1, "z": 1}]}',
        "lenient", "duplicate", "/object/x/y/0/z" },
      { "an empty eventTypeUid", '"eventTypeUid": "ACDASSS1ASS"', '"eventTypeUid": ""',
        "lenient", "format", "/object/eventTypeUid" },
      { "a date-time without seconds", '"endedAt": "2022-09-01T18:00:00.000Z"', '"endedAt": "2022-09-01T18:00Z"',
        "lenient", "format", "/object/endedAt" },
      { "cancelledAt not null nor a date", '"cancelledAt": null', '"cancelledAt": "soon"',
        "lenient", "format", "/object/cancelledAt" },
      { "a key to escape in the path", '"uid": "ACDADADASS"', '"uid": "A", "a/b~c": {"\\u00e9": 1e999}',
        "lenient", "limit", nil },
      { "a control character in a string", '"name": "John Doe"', '"name": "John\tDoe"',
        "lenient", "syntax", nil },
      { "a lone low surrogate", '"name": "John Doe"', '"name": "\\udc00"', "lenient", "encoding", "/object/contact/name" },
      { "an overlong UTF-8 form", '"name": "John Doe"', '"name": "\192\175"', "lenient", "encoding", "/object/contact/name" },
      { "an encoded surrogate", '"name": "John Doe"', '"name": "\237\160\128"', "lenient", "encoding", "/object/contact/name" },
      { "a code point above U+10FFFF", '"name": "John Doe"', '"name": "\244\144\128\128"', "lenient", "encoding", "/object/contact/name" },
      { "a truncated UTF-8 sequence in a key", '"name": "John Doe"', '"na\227\129": "x"', "lenient", "encoding", "/object/contact" },
      { "text after the document", '\n}\n', '\n}\n}', "lenient", "syntax", nil },
    }
    for _, case in ipairs(cases) do
      local title, from, to, level, code, path = case[1], case[2], case[3], case[4], case[5], case[6]
      it(title .. " is " .. code .. " at " .. tostring(path), function()
        local first, last = base:find(from, 1, true)
        assert.is_truthy(first, "the case's text is not in the fixture: " .. from)
        if from == "\n}\n" then first, last = #base - 2, #base end
        assert_rejects(base:sub(1, first - 1) .. to .. base:sub(last + 1), { level = level }, code, path)
      end)
    end

    it("names keys holding '/' and '~' as RFC 6901 says", function()
      local body = base:gsub('"uid": "ACDADADASS"', '"uid": "A", "a/b~c": {"d": [true, "\\ud800"]}')
      assert_rejects(body, nil, "encoding", "/object/a~1b~0c/d/1")
    end)

    it("names keys holding an escaped '/' or '~' the same way", function()
      local body = base:gsub('"uid": "ACDADADASS"', '"uid": "A", "a\\/b\\u007e\\u002fc": {"d": [true, "\\ud800"]}')
      assert_rejects(body, nil, "encoding", "/object/a~1b~0~1c/d/1")
    end)

    it("keeps the message on one line when a key holds control characters", function()
      for _, key in ipairs({ "a\\nb", "a\\u0000b", "a\\r\\u001b[31mb" }) do
        local body = '{"' .. key .. '": 1}'
        local _, msg, info = webhook.parse(body, { unknown_keys = "reject" })
        assert.are.equal("unknown_key", info.code)
        assert.are.equal("/" .. webhook.decode('"' .. key .. '"'), info.path)
        assert.is_nil(msg:find("[%z\1-\31\127]"), msg)
        assert.is_truthy(msg:find("/a\\u00", 1, true), msg)
      end
    end)

    it("reports the offset of the first bad byte", function()
      local body = '{"event": "guest_booked", "createdAt": x}'
      local _, _, info = webhook.parse(body)
      assert.are.equal("syntax", info.code)
      assert.are.equal(body:find("x", 1, true) - 1, info.offset)
    end)

    for _, body in ipairs({ "", "   ", "\239\187\191{}", "{", "nul", "[]", "\"x\"", "12", "true", "null" }) do
      it("rejects the body " .. string.format("%q", body) .. " without raising", function()
        local ok, ev, msg, info = pcall(webhook.parse, body)
        assert.is_true(ok)
        assert.is_nil(ev)
        assert.is_string(msg)
        assert.is_truthy(({ syntax = true, type = true })[info.code], msg)
      end)
    end
  end)

  describe("options", function()
    local drift = support.read(fixtures .. "/lenient/drift.json")
    local full = support.read(fixtures .. "/valid/strict_guest_booked_full.json")

    it("unknown_keys = 'drop' removes undocumented keys everywhere", function()
      local ev = assert(webhook.parse(drift, { unknown_keys = "drop" }))
      assert.is_nil(ev.object.meetingUrl)
      assert.is_nil(ev.object.contact.phoneNumber)
      assert.is_nil(ev.object.tracking.utm_id)
      assert.are.equal("John Doe", ev.object.contact.name)
    end)

    it("unknown_keys = 'reject' names the first undocumented key", function()
      assert_rejects(drift, { unknown_keys = "reject" }, "unknown_key", "/object/contact/phoneNumber")
    end)

    it("null = webhook.null keeps null keys", function()
      local ev = assert(webhook.parse(full, { null = webhook.null }))
      assert.are.equal(webhook.null, ev.object.cancelReason)
      assert.are.equal(cjson.null, ev.object.cancelledAt)
      assert.is_false(ev.object:is_cancelled())
      assert.is_nil(ev.object:cancelled_at())
    end)

    it("by default a null is absent", function()
      local ev = assert(webhook.parse(full))
      assert.is_nil(ev.object.cancelReason)
      assert.is_nil(rawget(ev.object, "cancelledBy"))
    end)

    it("max_size holds at its boundary", function()
      assert.is_truthy(webhook.parse(full, { max_size = #full }))
      local _, _, info = webhook.parse(full, { max_size = #full - 1 })
      assert.are.equal("limit", info.code)
      assert.are.equal(#full - 1, info.offset)
    end)

    it("max_depth holds at its boundary", function()
      local body = full:gsub('"uid": "ACDADADASS"', '"uid": "A", "deep": [[[]]]')
      assert.is_truthy(webhook.parse(body, { max_depth = 5 }))
      local _, _, info = webhook.parse(body, { max_depth = 4 })
      assert.are.equal("limit", info.code)
    end)

    local misuse = {
      { "a number body", function() webhook.parse(12) end },
      { "a nil body", function() webhook.parse(nil) end },
      { "an unknown option", function() webhook.parse(full, { levle = "strict" }) end },
      { "an unknown level", function() webhook.parse(full, { level = "loose" }) end },
      { "an unknown unknown_keys", function() webhook.parse(full, { unknown_keys = "ignore" }) end },
      { "a negative limit", function() webhook.parse(full, { max_size = -1 }) end },
      { "a fractional limit", function() webhook.parse(full, { max_depth = 2.5 }) end },
      { "a depth over the ceiling", function() webhook.parse(full, { max_depth = 100000 }) end },
      { "options that are not a table", function() webhook.parse(full, "strict") end },
    }
    for _, case in ipairs(misuse) do
      it("raises on " .. case[1], function()
        assert.has_error(case[2])
      end)
    end
  end)
end)

describe("parse: a byte-order mark", function()
  it("is named as one, at offset 0", function()
    local body = "\239\187\191" .. support.read(support.fixtures .. "/valid/guest_cancelled.json")
    local ev, msg, info = require("jicoo.webhook").parse(body)
    assert.is_nil(ev)
    assert.are.equal("syntax", info.code)
    assert.are.equal(0, info.offset)
    assert.truthy(msg:find("byte-order mark", 1, true), msg)
  end)
end)
