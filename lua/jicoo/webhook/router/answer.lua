-- Every answer the router and the nginx adapter send, each made in one place: the HTTP status, its
-- JSON body (json.lua), and the errors behind it (for the log). A result is
--   { status = 200, body = '{"ok":true,...}', event = ev or nil, key = ... or nil,
--     errors = { { stage, code, path, offset, handler, message }, ... } }
-- the table router:handle returns and openresty.serve answers with.
local ipairs = ipairs
local string_format = string.format

local json = require "jicoo.webhook.payload.json"

local json_encode = json.encode
local encode_string = json.encode_string
local encode_number = json.encode_number

local _M = {}

-- The known event names as JSON strings, made once: the handled answer names one on every
-- delivery, and json.encode's pattern search is one LuaJIT does not compile (spec/jit_spec.lua
-- fails on such an abort).
local EVENT_JSON = {}
for _, name in ipairs(require("jicoo.webhook.payload.types").EVENTS) do
  EVENT_JSON[name] = encode_string(name)
end

local function result(status, doc, ev, errors)
  return { status = status, body = json_encode(doc), event = ev, errors = errors or {} }
end

-- The 200 answers of the receive path are written out rather than through json.encode (the
-- same bytes, the keys in order): json.encode's loops would keep LuaJIT from compiling the
-- request path. `before` goes between "event" and "ok", `after` after "result"; `unknown`:
-- whether the answer says "unknown":true for an event name this version does not know.
local function ok_answer(ev, before, result_text, after, unknown)
  local body = '{"event":' .. (EVENT_JSON[ev.event] or encode_string(ev.event)) .. before
    .. ',"ok":true,"result":"' .. result_text .. '"' .. after
    .. ((unknown and not ev:is_known()) and ',"unknown":true}' or "}")
  return { status = 200, body = body, event = ev, errors = {} }
end

-- 200: every handler the delivery needed succeeded (ran: how many ran now).
function _M.handled(ev, ran)
  return ok_answer(ev, ',"handlers":' .. encode_number(ran), "handled", "", true)
end

-- 200: a copy of a delivery the journal has (done, dead, or running/failed in a durable one).
function _M.duplicate(ev, state)
  local res = ok_answer(ev, "", "duplicate", ',"state":' .. encode_string(state), true)
  res.duplicate = true
  return res
end

-- 200: journaled, waiting for an earlier delivery of its booking (router/ordering.lua); it
-- runs right after that one.
function _M.waiting(ev)
  return ok_answer(ev, "", "waiting", "", false)
end

-- 200 in answer-first mode: journaled, the handlers run after.
function _M.accepted(ev)
  return ok_answer(ev, "", "accepted", "", false)
end

-- 503: a copy of a delivery still running in a journal that is not durable.
function _M.in_progress(ev, retry_after)
  local res = result(503, { ok = false, error = "in_progress", event = ev.event }, ev)
  res.retry_after = retry_after
  return res
end

-- 503: the journal holds as many open deliveries as it may (its cap); the sender retries later.
function _M.journal_full(ev, message, retry_after)
  local res = result(503, { ok = false, error = "journal_full", event = ev.event }, ev,
    { { stage = "store", message = message } })
  res.retry_after = retry_after
  return res
end

-- 413: a body over the size limit (length: its size, as read or as Content-Length said).
function _M.too_large(length, max_size)
  return result(413, { ok = false, error = "too_large", max_size = max_size }, nil, {
    { stage = "size", code = "limit", message = string_format(
      "limit: body of %d bytes is over the %d-byte size limit", length, max_size) } })
end

-- 401: the signature does not verify (code: verify's).
function _M.bad_signature(code, message)
  return result(401, { ok = false, error = "bad_signature", code = code }, nil,
    { { stage = "signature", code = code, message = message } })
end

-- 400: the payload is invalid (message and info: parse's).
function _M.invalid_payload(message, info)
  return result(400, {
    ok = false, error = "invalid_payload", code = info.code, path = info.path,
    offset = info.offset, message = message,
  }, nil, { { stage = "parse", code = info.code, path = info.path, offset = info.offset,
    message = message } })
end

-- 500: the journal could not record the delivery; nothing was claimed, so the sender retries.
function _M.journal_failed(ev, message)
  return result(500, { ok = false, error = "store_failed", event = ev.event }, ev,
    { { stage = "store", message = message } })
end

-- 500: a handler raised (errors: one per failed handler); the journal retries the delivery.
function _M.handler_failed(ev, errors)
  return result(500, { ok = false, error = "handler_failed", event = ev.event,
    failed = #errors }, ev, errors)
end

-- 405: not a POST.
function _M.method_not_allowed(method)
  return result(405, { ok = false, error = "method_not_allowed" }, nil,
    { { stage = "method", message = "method " .. method } })
end

-- 500: the server could not do its part (error_name: "server_error", "busy", ...).
function _M.server_error(error_name, message, event)
  return result(500, { ok = false, error = error_name, event = event }, nil,
    { { stage = "server", message = message } })
end

return _M
