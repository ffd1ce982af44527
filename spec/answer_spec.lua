-- jicoo.webhook.router.answer: every answer the router and the nginx adapter send.
local answer = require "jicoo.webhook.router.answer"
local json = require "jicoo.webhook.payload.json"
local cjson = require "cjson"

-- A parsed event as far as answers look at it.
local function event(name, known)
  return { event = name, is_known = function() return known end }
end

describe("answer", function()
  it("writes the handled answer as json.encode would, byte for byte", function()
    for _, c in ipairs({ { "guest_booked", 1, false }, { "guest_assigned", 3, true },
      { 'we"ird\1\255', 0, true } }) do
      local res = answer.handled(event(c[1], not c[3]), c[2])
      assert.are.equal(json.encode({ ok = true, result = "handled", event = c[1],
        handlers = c[2], unknown = c[3] or nil }), res.body)
      assert.are.equal(200, res.status)
      assert.are.same({}, res.errors)
    end
  end)

  it("writes the duplicate, waiting and accepted answers as json.encode would, byte for byte", function()
    for _, c in ipairs({ { "guest_booked", false }, { 'we"ird\1\255', true } }) do
      local ev = event(c[1], not c[2])
      assert.are.equal(json.encode({ ok = true, result = "duplicate", state = "dead", event = c[1],
        unknown = c[2] or nil }), answer.duplicate(ev, "dead").body)
      assert.is_true(answer.duplicate(ev, "dead").duplicate)
      -- (these two never said "unknown")
      assert.are.equal(json.encode({ ok = true, result = "waiting", event = c[1] }),
        answer.waiting(ev).body)
      assert.are.equal(json.encode({ ok = true, result = "accepted", event = c[1] }),
        answer.accepted(ev).body)
    end
  end)

  local ev = event("guest_booked", true)
  local cases = {
    { "duplicate", answer.duplicate(ev, "done"), 200,
      { ok = true, result = "duplicate", state = "done", event = "guest_booked" } },
    { "accepted", answer.accepted(ev), 200, { ok = true, result = "accepted", event = "guest_booked" } },
    { "in_progress", answer.in_progress(ev, 30), 503,
      { ok = false, error = "in_progress", event = "guest_booked" } },
    { "too_large", answer.too_large(2000, 1000), 413, { ok = false, error = "too_large", max_size = 1000 } },
    { "bad_signature", answer.bad_signature("mismatch", "mismatch: ..."), 401,
      { ok = false, error = "bad_signature", code = "mismatch" } },
    { "invalid_payload", answer.invalid_payload("missing: /object/uid: ...", { code = "missing",
      path = "/object/uid", offset = 12 }), 400, { ok = false, error = "invalid_payload",
      code = "missing", path = "/object/uid", offset = 12, message = "missing: /object/uid: ..." } },
    { "journal_failed", answer.journal_failed(ev, "journal: down"), 500,
      { ok = false, error = "store_failed", event = "guest_booked" } },
    { "handler_failed", answer.handler_failed(ev, { { stage = "handler", message = "x" } }), 500,
      { ok = false, error = "handler_failed", event = "guest_booked", failed = 1 } },
    { "method_not_allowed", answer.method_not_allowed("GET"), 405,
      { ok = false, error = "method_not_allowed" } },
    { "server_error", answer.server_error("busy", "no timer", "guest_booked"), 500,
      { ok = false, error = "busy", event = "guest_booked" } },
  }
  for _, case in ipairs(cases) do
    it("answers " .. case[1] .. " " .. case[3], function()
      local res = case[2]
      assert.are.equal(case[3], res.status)
      assert.are.same(case[4], cjson.decode(res.body))
      assert.is_table(res.errors)
    end)
  end

  it("says what was too large, and by how much, for the log", function()
    local res = answer.too_large(2000, 1000)
    assert.are.same({ { stage = "size", code = "limit",
      message = "limit: body of 2000 bytes is over the 1000-byte size limit" } }, res.errors)
  end)

  it("keeps the seconds to wait with a 503", function()
    assert.are.equal(30, answer.in_progress(ev, 30).retry_after)
  end)
end)
