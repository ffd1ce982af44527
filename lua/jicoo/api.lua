-- A client of Jicoo's REST API (https://api.jicoo.com/v1), for handlers and scripts: bookings,
-- their contacts, cancel, reschedule and update; event types, their hosts and open slots.
-- docs/jicoo-api.md is its reference.
--
--   local api = require "jicoo.api"
--   local jicoo = api.client({ key = ..., http = ctx.http })
--   local booking, msg, code, info = jicoo:booking("bk_8Yt2")
--
-- Every call gives Jicoo's `data` (absent fields for its nulls), or nil, msg, code, info: code a
-- word to test (not_found, unauthorized, rate_limited, rejected (another 4xx), server (5xx);
-- without an answer the transport's: timeout, refused, tls, closed, limit, protocol), and
-- info.status (the HTTP status, nil when no answer came), info.errors (Jicoo's `errors` object,
-- when the answer had one), info.body (the answer's raw bytes), info.attempts. 429, 5xx and network
-- failures are retried with exponential backoff and jitter, within opts.retry's attempts and
-- total time; any other answer is final. The key goes into the X-Jicoo-Api-Key header and
-- nowhere else: no message, log line or info field holds it.
local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local tonumber = tonumber
local setmetatable = setmetatable
local string_format = string.format
local string_gsub = string.gsub
local string_byte = string.byte
local string_find = string.find
local table_concat = table.concat
local table_sort = table.sort
local math_random = math.random
local math_min = math.min
local os_getenv = os.getenv
local require = require

local core = require "jicoo.webhook.core"
local json = require "jicoo.webhook.payload.json"
local options = require "jicoo.webhook.options"
local socket = require "jicoo.net.socket"

local _M = {}

_M.BASE_URL = "https://api.jicoo.com/v1"

-- What Jicoo's documentation leaves open, each guess in this one place (docs/jicoo-api.md says
-- how sure each is); correct it here and every call follows.
_M.GUESSES = {
  -- POST /bookings/{uid}/cancel: the body is undocumented; one client sends {"reason": ...},
  -- the field may be cancelReason.
  cancel_body = function(reason)
    return { reason = reason }
  end,
  -- GET /event_type_hosts: the name of its event-type filter is undocumented.
  hosts_filter = "eventTypeId",
  -- The rest is for `jicoo-webhook reconcile`, which rebuilds the deliveries a receiver missed.
  -- GET /bookings has no filter by change time; its startedAt is taken as "meetings starting at
  -- or after". Reconcile checks each booking's own times, so a filter Jicoo ignores costs
  -- pages, never bookings; a meeting that began before `since` is not asked for.
  changed_since_query = function(since)
    return { startedAt = since, perPage = 100 }
  end,
  -- The event a cancelled booking's webhook had: cancelledBy "host" or not.
  cancel_event = function(booking)
    return booking.cancelledBy == "host" and "host_cancelled" or "guest_cancelled"
  end,
  -- Whether an open booking was rescheduled: a booking has no field saying so, so an update
  -- more than a minute after its creation is taken for one (an edit Jicoo sends no webhook
  -- for looks the same; the minute leaves out what Jicoo adds just after a booking, a link).
  rescheduled = function(booking)
    local created = type(booking.createdAt) == "string" and core.time(booking.createdAt)
    local updated = type(booking.updatedAt) == "string" and core.time(booking.updatedAt)
    return booking.status == "open" and created and updated and updated - created > 60 or false
  end,
  reschedule_event = "guest_rescheduled",   -- a booking does not say who moved it
  -- A booking (GET /bookings) as a delivery's `object`: eventTypeId is the webhook's
  -- eventTypeUid; the guest is the first of its contacts (nil: none), whose answers are the
  -- booking's; the booking carries no UTM parameters.
  webhook_object = function(booking, contact)
    local null = core.null
    contact = contact or {}
    return {
      uid = booking.uid, eventTypeUid = booking.eventTypeId, status = booking.status,
      timeZone = booking.timeZone, createdAt = booking.createdAt, updatedAt = booking.updatedAt,
      startedAt = booking.startedAt, endedAt = booking.endedAt,
      cancelReason = booking.cancelReason or null, cancelledAt = booking.cancelledAt or null,
      cancelledBy = booking.cancelledBy or null,
      contact = { name = contact.name or null, email = contact.email or null },
      answers = (type(contact.answers) == "table" and #contact.answers > 0) and contact.answers
        or json.EMPTY_ARRAY,
      tracking = { utm_campaign = null, utm_source = null, utm_medium = null,
        utm_content = null, utm_term = null },
    }
  end,
}

-- Statuses worth another attempt: Jicoo asks for backoff on 429; 5xx are its own failures.
local function retried(status)
  return status == nil or status == 429 or status >= 500
end

_M.DEFAULT_RETRY = {
  attempts = 5,      -- the first try and up to 4 more
  base_delay = 0.5,  -- seconds before the second; doubled each time, then jittered
  max_delay = 8,     -- no single wait is longer
  max_time = 30,     -- seconds from the first try after which no new attempt starts
}
_M.DEFAULT_TIMEOUT = 10000   -- ms a request may take, whole (ctx.http's timeout)

---------------------------------------------------------------------------------------------
-- Text

-- RFC 3986 percent-encoding of everything but the unreserved characters.
local function encode_component(value)
  return (string_gsub(tostring(value), "[^%w%-%._~]", function(c)
    return string_format("%%%02X", string_byte(c))
  end))
end

-- "?a=1&b=2" from a table of query values (sorted, so the same query gives the same URL).
local function query_string(query)
  if not query then
    return ""
  end
  local names = {}
  for name in pairs(query) do
    names[#names + 1] = name
  end
  if #names == 0 then
    return ""
  end
  table_sort(names)
  local parts = {}
  for i, name in ipairs(names) do
    parts[i] = encode_component(name) .. "=" .. encode_component(query[name])
  end
  return "?" .. table_concat(parts, "&")
end

-- Jicoo's nulls become absent fields, as in the webhook's typed tables (a null in a list stays
-- webhook.null, so that the list keeps its length).
local function without_nulls(value)
  if type(value) == "table" then
    for k, v in pairs(value) do
      if v == core.null and type(k) ~= "number" then
        value[k] = nil
      else
        without_nulls(v)
      end
    end
  end
  return value
end

-- Jicoo's errors object as one line ("field: message; ..."), for the message.
local function errors_text(errors)
  if type(errors) ~= "table" then
    return nil
  end
  local parts = {}
  for name, value in pairs(errors) do
    if type(value) == "table" then
      local items = {}
      for _, item in ipairs(value) do
        items[#items + 1] = tostring(item)
      end
      value = table_concat(items, ", ")
    end
    parts[#parts + 1] = tostring(name) .. ": " .. tostring(value)
  end
  table_sort(parts)
  return #parts > 0 and table_concat(parts, "; ") or nil
end

---------------------------------------------------------------------------------------------
-- The client

local Client = {}
Client.__index = Client

local function check_key(key)
  if type(key) ~= "string" or key == "" then
    error("jicoo.api.client: no API key: give opts.key, or set JICOO_API_KEY", 3)
  end
  if string_find(key, "[%s%c]") then
    error("jicoo.api.client: the API key holds whitespace or a control character (a"
      .. " copy-paste?)", 3)
  end
end

-- opts: key (default $JICOO_API_KEY), http (a transport: function(request) -> response | nil,
-- err; default jicoo.net.http's, so ctx.http in a handler), base_url (default BASE_URL, or
-- $JICOO_API_URL), timeout (ms), retry ({ attempts, base_delay, max_delay, max_time }), ca_file
-- (TLS outside nginx), log (function(message), e.g. ctx.log.warn: one line per retry),
-- sleep, now (the clock and the wait between attempts; default: socket.lua's).
local OPTIONS = options.schema("jicoo.api.client", {
  { "key", "string" },
  { "base_url", "string" },
  { "http", "callable", what = "a function(request) -> response | nil, err" },
  { "timeout", "number", default = _M.DEFAULT_TIMEOUT, check = options.positive,
    what = "a positive number of milliseconds" },
  { "ca_file", "string" },
  { "retry", "table", default = {} },
  { "log", "callable", what = "a function(level, message)" },
  { "sleep", "callable", default = socket.sleep, what = "a function(seconds)" },
  { "now", "callable", default = socket.now, what = "a function (the clock, seconds)" },
})

function _M.client(opts)
  opts = OPTIONS:check(opts, 2)
  local key = opts.key or os_getenv("JICOO_API_KEY")
  check_key(key)
  local retry = {}
  for name, default in pairs(_M.DEFAULT_RETRY) do
    local value = opts.retry and opts.retry[name]
    if value ~= nil and (type(value) ~= "number" or value < 0) then
      error("jicoo.api.client: opts.retry." .. name .. " must be a number, 0 or more", 2)
    end
    retry[name] = value or default
  end
  if retry.attempts < 1 then
    error("jicoo.api.client: opts.retry.attempts must be 1 or more", 2)
  end
  local base_url = opts.base_url or os_getenv("JICOO_API_URL")
  if base_url == nil or base_url == "" then
    base_url = _M.BASE_URL
  end
  return setmetatable({
    key = key,
    http = opts.http or require("jicoo.net.http").request,
    base_url = (string_gsub(base_url, "/+$", "")),
    timeout = opts.timeout,
    ca_file = opts.ca_file,
    retry = retry,
    log = opts.log,
    sleep = opts.sleep,
    now = opts.now,
  }, Client)
end

-- The wait before attempt n + 1 (n >= 1): base * 2^(n-1), capped, then between half and all
-- of it ("equal jitter"), so that clients that failed together do not come back together.
local function backoff(retry, n)
  local delay = math_min(retry.max_delay, retry.base_delay * 2 ^ (n - 1))
  return delay / 2 + math_random() * delay / 2
end

-- The code of a failed answer, by its status.
local function status_code(status)
  if status == 404 then
    return "not_found"
  elseif status == 401 or status == 403 then
    return "unauthorized"
  elseif status == 429 then
    return "rate_limited"
  elseif status >= 500 then
    return "server"
  end
  return "rejected"
end

-- One answer judged: data (or true when the answer has no body), or nil, msg, code, info.
local function judge(what, res, attempts)
  local status, body = res.status, res.body or ""
  local decoded
  if body ~= "" then
    decoded = core.decode(body)
  end
  local errors = type(decoded) == "table" and decoded.errors or nil
  if status >= 200 and status < 300 then
    if body == "" then
      return true
    elseif type(decoded) ~= "table" then
      return nil, "jicoo api: " .. what .. ": " .. status .. " with an answer that is not a"
        .. " JSON object", "protocol", { status = status, body = body, attempts = attempts }
    end
    local data = decoded.data
    if data == nil or data == core.null then
      return true
    end
    return without_nulls(data), nil, decoded
  end
  local detail = errors_text(errors)
  return nil, "jicoo api: " .. what .. ": " .. status .. " " .. (res.reason or "")
      .. (detail and " (" .. detail .. ")" or "")
      .. (attempts > 1 and ", after " .. attempts .. " attempts" or ""),
    status_code(status), { status = status, errors = errors ~= core.null and errors or nil,
      body = body, attempts = attempts }
end

-- A call of any endpoint: method, path under the base URL (with its query table) and a body
-- (a table, sent as JSON). Gives data (the whole answer as a third value), or nil, msg, code,
-- info.
function Client:request(method, path, query, body)
  if type(path) ~= "string" or not string_find(path, "^/") then
    error("jicoo.api: the path must start with '/', got " .. tostring(path), 2)
  end
  local what = method .. " " .. path
  local request = {
    method = method,
    url = self.base_url .. path .. query_string(query),
    headers = { ["X-Jicoo-Api-Key"] = self.key, ["Accept"] = "application/json" },
    timeout = self.timeout,
    ca_file = self.ca_file,
  }
  if body ~= nil then
    request.body = json.encode(body)
    request.headers["Content-Type"] = "application/json"
  end
  local retry = self.retry
  local started = self.now()
  local attempt = 0
  while true do
    attempt = attempt + 1
    local res, err, code = self.http(request)
    local status = res and res.status
    if res and not retried(status) then
      return judge(what, res, attempt)
    end
    local reason = res and (status .. " " .. (res.reason or "")) or tostring(err)
    local delay = backoff(retry, attempt)
    local after = res and tonumber(res.headers and res.headers["retry-after"])
    if after and after > delay then
      delay = math_min(after, retry.max_delay)
    end
    if attempt >= retry.attempts or self.now() - started + delay > retry.max_time then
      if res then
        return judge(what, res, attempt)
      end
      return nil, "jicoo api: " .. what .. ": " .. reason
          .. (attempt > 1 and ", after " .. attempt .. " attempts" or ""),
        code or socket.code_of(err), { attempts = attempt }
    end
    if self.log then
      self.log(string_format("jicoo api: %s: %s; attempt %d of %d in %.1f s", what, reason,
        attempt + 1, retry.attempts, delay))
    end
    self.sleep(delay)
  end
end

local function segment(uid, call)
  if type(uid) ~= "string" or uid == "" then
    error("jicoo.api: " .. call .. ": the uid must be a non-empty string", 3)
  end
  return encode_component(uid)
end

-- Pages of a list endpoint, as an iterator: each step gives the page's items and the page
-- ({ totalCount, count, currentPage, nextPage, numberOfPages }); a failure gives false, msg,
-- code, info once, then the loop ends.
local function pages(client, path, query)
  local page = query and query.page or 1
  local done = false
  return function()
    if done then
      return nil
    end
    local q = {}
    for name, value in pairs(query or {}) do
      q[name] = value
    end
    q.page = page
    local items, msg, answer, info = client:request("GET", path, q)
    if not items then
      done = true
      return false, msg, answer, info   -- answer: the failure's code
    end
    if items == true then
      items = {}
    end
    local next_page = tonumber(answer.nextPage ~= core.null and answer.nextPage or nil)
    local last = tonumber(answer.numberOfPages ~= core.null and answer.numberOfPages or nil)
    if #items == 0 or not next_page or next_page <= page or (last and page >= last) then
      done = true
    end
    page = next_page or page + 1
    return items, {
      totalCount = answer.totalCount, count = answer.count, currentPage = answer.currentPage,
      nextPage = next_page, numberOfPages = last,
    }
  end
end

-- Bookings: query status ("open", "cancel"), startedAt, endedAt, order, sort, perPage, page.
function Client:bookings(query)
  return pages(self, "/bookings", query)
end

function Client:booking(uid)
  return self:request("GET", "/bookings/" .. segment(uid, "booking"))
end

-- A booking's contacts (the guest and anyone they added); Jicoo answers 404 when there are none.
function Client:booking_contacts(uid)
  return self:request("GET", "/bookings/" .. segment(uid, "booking_contacts") .. "/contacts")
end

function Client:cancel(uid, reason)
  if reason ~= nil and type(reason) ~= "string" then
    error("jicoo.api: cancel: the reason must be a string", 2)
  end
  return self:request("POST", "/bookings/" .. segment(uid, "cancel") .. "/cancel", nil,
    _M.GUESSES.cancel_body(reason))
end

-- to: { startedAt = RFC 3339, timeZone = IANA name }, both required; 422 when the slot is taken.
function Client:reschedule(uid, to)
  if type(to) ~= "table" or type(to.startedAt) ~= "string" or type(to.timeZone) ~= "string" then
    error("jicoo.api: reschedule: give { startedAt = ..., timeZone = ... }", 2)
  end
  return self:request("POST", "/bookings/" .. segment(uid, "reschedule") .. "/reschedule", nil,
    { startedAt = to.startedAt, timeZone = to.timeZone })
end

-- fields: any of name, description, timeZone, startedAt, endedAt, hosts, priority,
-- updateMessage, isSendUpdates.
function Client:update(uid, fields)
  if type(fields) ~= "table" then
    error("jicoo.api: update: the fields must be a table", 2)
  end
  return self:request("PATCH", "/bookings/" .. segment(uid, "update"), nil, fields)
end

function Client:event_types(query)
  return pages(self, "/event_types", query)
end

function Client:event_type(uid)
  return self:request("GET", "/event_types/" .. segment(uid, "event_type"))
end

-- The hosts of one event type (or of every one, without a uid).
function Client:event_type_hosts(event_type_uid, query)
  local q = {}
  for name, value in pairs(query or {}) do
    q[name] = value
  end
  if event_type_uid ~= nil then
    q[_M.GUESSES.hosts_filter] = event_type_uid
  end
  return pages(self, "/event_type_hosts", q)
end

-- Open slots of an event type between periodStart and periodEnd (at most 7 days apart).
function Client:available_schedules(uid, period)
  if type(period) ~= "table" or type(period.periodStart) ~= "string"
      or type(period.periodEnd) ~= "string" then
    error("jicoo.api: available_schedules: give { periodStart = ..., periodEnd = ... }", 2)
  end
  return self:request("GET", "/event_types/" .. segment(uid, "available_schedules")
    .. "/available_schedules", { periodStart = period.periodStart, periodEnd = period.periodEnd })
end

-- The key stays out of anything printed.
function Client:__tostring()
  return "jicoo.api client (" .. self.base_url .. ")"
end

_M.Client = Client
_M.query_string = query_string

return _M
