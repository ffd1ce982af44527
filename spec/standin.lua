-- Stand-ins for the services the automations call, served by a real nginx that the specs start
-- (servers.standin): Jicoo's REST API as docs/jicoo-api.md describes its answers (over TLS),
-- and a Slack-compatible incoming webhook that records what it is sent. Runs inside nginx, in
-- content_by_lua: require("standin").api(), .slack(), .control(). State lives in the shared
-- dict "standin", so every worker sees it and a spec can reset it.
--
-- Bookings: any uid is a booking made from the template below, except these, which misbehave:
--   bk_missing   404 with an errors object       bk_nocontacts  404 on its contacts
--   bk_busy      429 twice, then 200             bk_broken      500 always
--   bk_slow      answers after 2 s               bk_truncated   a body cut short, then closed
-- GET /bookings lists 5 bookings, 2 a page (perPage changes it), or the bookings a spec set
-- (POST /control/bookings with a JSON list, each the template with the fields given; the list
-- honours status and startedAt (meetings starting at or after), and answers 500 while
-- POST /control/bookings_broken is set); a reschedule to
-- 2030-01-01T00:00:00.000Z is 422 (that slot is taken). A cancel turns the booking's status to
-- "cancel" and is recorded with its body. Every request is logged ("METHOD /path?query").
local cjson = require "cjson.safe"

local _M = {}

_M.KEY = "sk_live_standin_0123456789"
_M.TAKEN_SLOT = "2030-01-01T00:00:00.000Z"

local dict = ngx.shared.standin

local function append(list_name, value)
  local n = dict:incr(list_name .. ":n", 1, 0)
  dict:set(list_name .. ":" .. n, value)
end

local function list(list_name)
  local items = {}
  for i = 1, dict:get(list_name .. ":n") or 0 do
    items[i] = dict:get(list_name .. ":" .. i)
  end
  return items
end

local function answer(status, value, headers)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  for name, v in pairs(headers or {}) do
    ngx.header[name] = v
  end
  ngx.print(cjson.encode(value))
  return ngx.exit(ngx.HTTP_OK)
end

local function booking(uid)
  local status = dict:get("status:" .. uid) or "open"
  return {
    uid = uid, eventTypeId = "et_intro30", name = "Intro call", description = cjson.null,
    status = status, startedAt = dict:get("startedAt:" .. uid) or "2026-03-07T10:00:00.000Z",
    endedAt = "2026-03-07T10:30:00.000Z", locationId = "googleMeet",
    url = "https://meet.google.com/abc-defg-hij", phoneNumber = cjson.null,
    address = cjson.null, customLocation = cjson.null, access = cjson.null,
    timeZone = "Asia/Tokyo", priority = "low",
    cancelReason = dict:get("reason:" .. uid) or cjson.null,
    cancelledAt = status == "cancel" and "2026-03-02T00:00:00.000Z" or cjson.null,
    cancelledBy = status == "cancel" and "host" or cjson.null,
    hosts = { { userId = "cfmSbUHeizSoZob9cRA3N8fmfKg1", role = "admin" } },
    createdAt = "2026-02-28T00:00:00.000Z", updatedAt = "2026-03-01T23:59:59.000Z",
  }
end

local CONTACT = {
  name = "Hanako Sato", email = "hanako.sato@example.jp", ccEmails = {},
  company = "Example K.K.", phoneNumber = "+81-3-0000-0000", message = cjson.null,
  textRemindNumber = cjson.null, textRemindCountryCode = cjson.null,
  answers = { { question = "What would you like to discuss?", content = { "Pricing" } } },
  createdAt = "2026-02-28T00:00:00.000Z", updatedAt = "2026-02-28T00:00:00.000Z",
}

local function page_of(items, args)
  local per_page = tonumber(args.perPage) or 2
  local page = tonumber(args.page) or 1
  local pages = math.max(1, math.ceil(#items / per_page))
  local data = {}
  for i = (page - 1) * per_page + 1, math.min(#items, page * per_page) do
    data[#data + 1] = items[i]
  end
  return answer(200, { data = data, totalCount = #items, count = #data, currentPage = page,
    nextPage = page < pages and page + 1 or cjson.null, numberOfPages = pages, errors = {} })
end

local function one(data)
  return answer(200, { data = data, errors = {} })
end

local function not_found(what)
  return answer(404, { data = cjson.null, errors = { message = what .. " not found" } })
end

local function read_json()
  ngx.req.read_body()
  return cjson.decode(ngx.req.get_body_data() or "") or {}
end

-- The bookings GET /bookings lists: those a spec set, else bk_list_1 to 5.
local function listed()
  local set = cjson.decode(dict:get("bookings") or "null")
  if type(set) ~= "table" then
    local items = {}
    for i = 1, 5 do
      items[i] = booking("bk_list_" .. i)
    end
    return items
  end
  for i, fields in ipairs(set) do
    local b = booking(fields.uid)
    for name, value in pairs(fields) do
      b[name] = value
    end
    set[i] = b
  end
  return set
end

local function bookings_route(method, uid, rest, args)
  if uid == nil then
    if dict:get("bookings_broken") then
      return answer(500, { errors = { message = "internal error" } })
    end
    local items = {}
    for _, b in ipairs(listed()) do
      if (not args.status or args.status == b.status)
          and (not args.startedAt or b.startedAt >= args.startedAt) then
        items[#items + 1] = b
      end
    end
    return page_of(items, args)
  elseif uid == "bk_missing" then
    return not_found("booking")
  elseif uid == "bk_broken" then
    return answer(500, { errors = { message = "internal error" } })
  elseif uid == "bk_busy" and dict:incr("busy", 1, 0) <= 2 then
    return answer(429, { errors = { message = "too many requests" } })
  elseif uid == "bk_slow" then
    ngx.sleep(2)
  elseif uid == "bk_truncated" then
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = 400
    ngx.print('{"data": {"uid": "bk_trunc')
    ngx.flush(true)
    return ngx.exit(ngx.ERROR)
  end
  if rest == "" and method == "GET" then
    return one(booking(uid))
  elseif rest == "/contacts" and method == "GET" then
    if uid == "bk_nocontacts" then
      return not_found("contacts")
    end
    return one({ CONTACT })
  elseif rest == "/cancel" and method == "POST" then
    local body = read_json()
    append("cancelled", cjson.encode({ uid = uid, body = body }))
    dict:set("status:" .. uid, "cancel")
    if type(body.reason) == "string" then
      dict:set("reason:" .. uid, body.reason)
    end
    return one(booking(uid))
  elseif rest == "/reschedule" and method == "POST" then
    local body = read_json()
    if type(body.startedAt) ~= "string" or type(body.timeZone) ~= "string" then
      return answer(400, { errors = { message = "startedAt and timeZone are required" } })
    elseif body.startedAt == _M.TAKEN_SLOT then
      return answer(422, { errors = { startedAt = { "is not available" } } })
    end
    dict:set("startedAt:" .. uid, body.startedAt)
    return one(booking(uid))
  elseif rest == "" and method == "PATCH" then
    local b = booking(uid)
    for name, value in pairs(read_json()) do
      b[name] = value
    end
    return one(b)
  end
  return answer(405, { errors = { message = method .. " not allowed here" } })
end

-- location /v1/
function _M.api()
  local method = ngx.req.get_method()
  local args = ngx.req.get_uri_args()
  append("requests", method .. " " .. ngx.var.request_uri)
  local headers = ngx.req.get_headers()
  if headers.authorization then
    return answer(403, { errors = { message = "use X-Jicoo-Api-Key" } })
  elseif headers["x-jicoo-api-key"] ~= _M.KEY then
    return answer(401, { errors = { message = "no valid api key" } })
  end
  local path = ngx.var.request_uri:gsub("%?.*$", ""):gsub("^/v1", "")   -- still escaped
  local uid, rest = path:match("^/bookings/([^/]+)(.*)$")
  if uid or path == "/bookings" then
    return bookings_route(method, uid and ngx.unescape_uri(uid), rest or "", args)
  elseif path == "/event_types" then
    return page_of({ { uid = "et_intro30", name = "Intro call", status = "enable", duration = 30 } }, args)
  end
  local event_type, what = path:match("^/event_types/([^/]+)(.*)$")
  if event_type == "et_intro30" and what == "" then
    return one({ uid = event_type, name = "Intro call", status = "enable", duration = 30 })
  elseif event_type == "et_intro30" and what == "/available_schedules" then
    if not args.periodStart or not args.periodEnd then
      return answer(400, { errors = { message = "periodStart and periodEnd are required" } })
    end
    return one({ { startedAt = args.periodStart, remainingCapacity = 1 } })
  elseif event_type then
    return not_found("event type")
  elseif path == "/event_type_hosts" then
    local hosts = {}
    if args.eventTypeId == "et_intro30" then
      hosts[1] = { uid = "h_1", name = "Taro Host", email = "taro@example.jp",
        profileImage = cjson.null, role = "admin", priority = 1, userType = "host", sort = 1 }
    end
    return page_of(hosts, args)
  end
  return not_found("path")
end

-- location = /slack/hook: an incoming webhook that answers "ok" to JSON with a text, and 500
-- while the spec asked it to fail (POST /control/slack_fail?n=N).
function _M.slack()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  local message = cjson.decode(body)
  if ngx.req.get_method() ~= "POST" or type(message) ~= "table" or type(message.text) ~= "string" then
    ngx.status = 400
    ngx.print("invalid_payload")
    return ngx.exit(ngx.HTTP_OK)
  end
  if (dict:get("slack_fail") or 0) > 0 then
    dict:incr("slack_fail", -1)
    ngx.status = 500
    ngx.print("internal_error")
    return ngx.exit(ngx.HTTP_OK)
  end
  append("slack", body)
  ngx.header["Content-Type"] = "text/plain"
  ngx.print("ok")
end

-- location /control/: reset, slack_fail?n=N, bookings (a JSON list to list), bookings_broken,
-- and what was recorded (requests, slack, cancelled).
function _M.control()
  local what = ngx.var.uri:match("^/control/(.*)$")
  if what == "bookings" then
    ngx.req.read_body()
    dict:set("bookings", ngx.req.get_body_data() or "[]")
    return answer(200, { ok = true })
  elseif what == "bookings_broken" then
    dict:set("bookings_broken", true)
    return answer(200, { ok = true })
  elseif what == "reset" then
    dict:flush_all()
    return answer(200, { ok = true })
  elseif what == "slack_fail" then
    dict:set("slack_fail", tonumber(ngx.req.get_uri_args().n) or 1)
    return answer(200, { ok = true })
  end
  local items = list(what)
  setmetatable(items, cjson.array_mt)
  return answer(200, items)
end

return _M
