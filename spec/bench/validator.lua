-- The benchmark's competitor: cjson.decode, then Jicoo's webhook contract (its published JSON
-- Schema, spec/fixtures/jicoo-webhook.schema.json) checked in plain Lua, written the way a
-- careful user would write it. Same result shape as webhook.parse: the document, or nil, msg,
-- { code =, path = }.
--
-- What cjson cannot let it check (the self-check in bench_selfcheck.lua lists these as known gaps):
--   * a key repeated in one object: cjson keeps the last value, the first is gone;
--   * `[]` against `{}`: both decode to an empty table (unless the cjson build has OpenResty's
--     decode_array_with_array_mt, which this uses when present);
--   * where in the document a bad UTF-8 byte sits: the whole body is checked up front, so the
--     rejection has the right code but no path;
--   * a lone surrogate escape: cjson refuses it itself, as a syntax error.

local cjson = require "cjson"

local type = type
local next = next
local pcall = pcall
local tostring = tostring
local tonumber = tonumber
local getmetatable = getmetatable
local string_byte = string.byte
local string_find = string.find
local string_match = string.match
local utf8_len = rawget(_G, "utf8") and utf8.len   -- Lua 5.3+

local _M = {}

local MAX_SIZE = 1024 * 1024
local MAX_DEPTH = 32

-- A decoder of our own, so the baseline's module-wide cjson settings stay untouched.
local decoder = cjson.new()
decoder.decode_max_depth(MAX_DEPTH)
decoder.decode_invalid_numbers(false)   -- RFC 8259: no NaN, Infinity or hex
local decode = decoder.decode
local null = cjson.null

local array_mt
if decoder.decode_array_with_array_mt then
  decoder.decode_array_with_array_mt(true)
  array_mt = cjson.array_mt
end
_M.tells_empty_array_from_object = array_mt ~= nil

local function is_object(v)
  if type(v) ~= "table" then
    return false
  end
  if array_mt then
    return getmetatable(v) ~= array_mt
  end
  return type(next(v)) ~= "number"
end

local function is_array(v)
  if type(v) ~= "table" then
    return false
  end
  if array_mt then
    return getmetatable(v) == array_mt
  end
  return type(next(v)) ~= "string"
end

-- Strict UTF-8 (shortest form, no surrogates, at most U+10FFFF): true, or false and the byte.
local utf8_valid
if utf8_len then
  utf8_valid = function(s)
    local n, bad = utf8_len(s)
    if n then
      return true
    end
    return false, bad
  end
else
  utf8_valid = function(s)
    local i = string_find(s, "[\128-\255]")
    while i do
      local c = string_byte(s, i)
      local extra                        -- continuation bytes that follow
      local low, high = 0x80, 0xBF       -- the range allowed for the first of them
      if c >= 0xC2 and c <= 0xDF then
        extra = 1
      elseif c >= 0xE0 and c <= 0xEF then
        extra = 2
        if c == 0xE0 then low = 0xA0 elseif c == 0xED then high = 0x9F end
      elseif c >= 0xF0 and c <= 0xF4 then
        extra = 3
        if c == 0xF0 then low = 0x90 elseif c == 0xF4 then high = 0x8F end
      else
        return false, i
      end
      local b = string_byte(s, i + 1)
      if not b or b < low or b > high then
        return false, i
      end
      for j = i + 2, i + extra do
        b = string_byte(s, j)
        if not b or b < 0x80 or b > 0xBF then
          return false, i
        end
      end
      i = string_find(s, "[\128-\255]", i + extra + 1)
    end
    return true
  end
end

local DAYS_IN_MONTH = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- RFC 3339 section 5.6 date-time, with the calendar checked.
local function is_datetime(s)
  local y, mo, d, h, mi, sec, rest =
    string_match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then
    return false
  end
  local offset = string_match(rest, "^%.%d+(.*)$") or rest
  if offset ~= "Z" and offset ~= "z" then
    local oh, om = string_match(offset, "^[+%-](%d%d):(%d%d)$")
    if not oh or tonumber(oh) > 23 or tonumber(om) > 59 then
      return false
    end
  end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 then
    return false
  end
  local last = DAYS_IN_MONTH[mo]
  if mo == 2 and y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0) then
    last = 29
  end
  return d <= last and tonumber(h) <= 23 and tonumber(mi) <= 59 and tonumber(sec) <= 60
end
_M.is_datetime = is_datetime

local function set(list)
  local s = {}
  for _, v in ipairs(list) do
    s[v] = true
  end
  return s
end

local EVENTS = set { "guest_booked", "guest_rescheduled", "host_rescheduled", "guest_cancelled",
  "host_cancelled" }
local STATUSES = set { "open", "cancel" }

-- Field lists: { key, required ("always", "strict" or false), nullable, check, known values }.
local TEXT, NONEMPTY, DATETIME = "text", "non-empty", "date-time"

local EVENT_FIELDS = {
  { "event", "always", false, TEXT, EVENTS },
  { "createdAt", "always", false, DATETIME },
}
local BOOKING_FIELDS = {
  { "uid", "always", false, NONEMPTY },
  { "eventTypeUid", "always", false, NONEMPTY },
  { "status", "always", false, TEXT, STATUSES },
  { "timeZone", "always", false, NONEMPTY },
  { "createdAt", "always", false, DATETIME },
  { "updatedAt", "always", false, DATETIME },
  { "startedAt", "always", false, DATETIME },
  { "endedAt", "always", false, DATETIME },
  { "cancelReason", "strict", true, TEXT },
  { "cancelledAt", "strict", true, DATETIME },
  { "cancelledBy", "strict", true, TEXT },
}
local CONTACT_FIELDS = {
  { "email", false, true, TEXT },
  { "name", false, true, TEXT },
}
local TRACKING_FIELDS = {
  { "utm_campaign", false, true, TEXT },
  { "utm_source", false, true, TEXT },
  { "utm_medium", false, true, TEXT },
  { "utm_content", false, true, TEXT },
  { "utm_term", false, true, TEXT },
}
local ANSWER_FIELDS = {
  { "question", "always", false, TEXT },
}

-- Checks the string fields of t; nil when all pass, else code, path, what.
-- Paths are only built on failure, so a valid delivery pays no concatenation.
local function check_fields(t, fields, base, strict)
  for i = 1, #fields do
    local field = fields[i]
    local key = field[1]
    local v = t[key]
    if v == nil then
      local required = field[2]
      if required == "always" or (strict and required == "strict") then
        return "missing", base .. "/" .. key, "required key absent"
      end
    elseif v == null then
      if not field[3] then
        return "type", base .. "/" .. key, "string expected, got null"
      end
    elseif type(v) ~= "string" then
      return "type", base .. "/" .. key, "string expected, got " .. type(v)
    else
      local check = field[4]
      if check == NONEMPTY and v == "" then
        return "format", base .. "/" .. key, "empty string"
      elseif check == DATETIME and not is_datetime(v) then
        return "format", base .. "/" .. key, "not an RFC 3339 date-time"
      elseif strict and field[5] and not field[5][v] then
        return "enum", base .. "/" .. key, "unknown value '" .. v .. "'"
      end
    end
  end
  return nil
end

-- The object at t[key]; or nil and code, path, what.
local function object_field(t, key, base)
  local v = t[key]
  if v == nil then
    return nil, "missing", base .. "/" .. key, "required key absent"
  elseif not is_object(v) then
    return nil, "type", base .. "/" .. key, "object expected"
  end
  return v
end

local function check_answers(answers, strict)
  for i = 1, #answers do
    local answer = answers[i]
    local base = "/object/answers/" .. (i - 1)
    if not is_object(answer) then
      return "type", base, "object expected"
    end
    local code, path, what = check_fields(answer, ANSWER_FIELDS, base, strict)
    if code then
      return code, path, what
    end
    local content = answer.content
    if content == nil then
      return "missing", base .. "/content", "required key absent"
    elseif type(content) == "string" then
      if strict then
        return "type", base .. "/content", "array expected, got string"
      end
    elseif not is_array(content) then
      return "type", base .. "/content", "array expected"
    else
      for j = 1, #content do
        if type(content[j]) ~= "string" then
          return "type", base .. "/content/" .. (j - 1), "string expected"
        end
      end
    end
  end
  return nil
end

local function check_booking(b, strict)
  local code, path, what = check_fields(b, BOOKING_FIELDS, "/object", strict)
  if code then
    return code, path, what
  end
  local contact, tracking
  contact, code, path, what = object_field(b, "contact", "/object")
  if not contact then
    return code, path, what
  end
  code, path, what = check_fields(contact, CONTACT_FIELDS, "/object/contact", strict)
  if code then
    return code, path, what
  end
  local answers = b.answers
  if answers == nil then
    return "missing", "/object/answers", "required key absent"
  elseif not is_array(answers) then
    return "type", "/object/answers", "array expected"
  end
  code, path, what = check_answers(answers, strict)
  if code then
    return code, path, what
  end
  tracking, code, path, what = object_field(b, "tracking", "/object")
  if not tracking then
    return code, path, what
  end
  return check_fields(tracking, TRACKING_FIELDS, "/object/tracking", strict)
end

local function fail(code, path, what)
  return nil, code .. ": " .. (path or "-") .. ": " .. what, { code = code, path = path }
end

-- doc, or nil, msg, { code, path }; opts.level = "strict" closes the enums and requires cancel*.
function _M.validate(body, opts)
  local strict = opts ~= nil and opts.level == "strict"
  if #body > MAX_SIZE then
    return fail("limit", nil, "body over " .. MAX_SIZE .. " bytes")
  end
  local valid, bad = utf8_valid(body)
  if not valid then
    return fail("encoding", nil, "invalid UTF-8 at byte " .. tostring(bad))
  end
  local ok, doc = pcall(decode, body)
  if not ok then
    if string_find(tostring(doc), "too many nested", 1, true) then
      return fail("limit", nil, tostring(doc))
    end
    return fail("syntax", nil, tostring(doc))
  end
  if not is_object(doc) then
    return fail("type", "", "object expected")
  end
  local code, path, what = check_fields(doc, EVENT_FIELDS, "", strict)
  if code then
    return fail(code, path, what)
  end
  local booking
  booking, code, path, what = object_field(doc, "object", "")
  if not booking then
    return fail(code, path, what)
  end
  code, path, what = check_booking(booking, strict)
  if code then
    return fail(code, path, what)
  end
  return doc
end

return _M
