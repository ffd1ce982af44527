-- JSON text from Lua values, for what the library writes itself: the router's and the nginx
-- adapter's answers, and the journal's records. Reading JSON is the C core's (core.decode).
--
-- Strings are written byte for byte but for the escapes JSON requires; a byte that is not part
-- of a valid UTF-8 sequence becomes U+FFFD, so the output is always valid JSON (a message may
-- quote broken input). A table is an array when its keys are exactly 1..n (n > 0), else an
-- object, its keys sorted so that the same value always gives the same text.

local type = type
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local error = error
local tostring = tostring
local string_format = string.format
local string_byte = string.byte
local string_gsub = string.gsub
local string_find = string.find
local table_concat = table.concat
local table_sort = table.sort
local math_floor = math.floor
local math_huge = math.huge

local utf8_repair = require("jicoo.webhook.core").utf8_repair

local _M = {}

local ESCAPES = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function escape_char(c)
  return ESCAPES[c] or string_format("\\u%04x", string_byte(c))
end

local function encode_string(s)
  if not string_find(s, '[%c"\\\128-\255]') then -- most strings: nothing to escape or repair
    return '"' .. s .. '"'
  end
  if string_find(s, "[\128-\255]") then
    s = utf8_repair(s)   -- the core's strict UTF-8 rule, the one parse applies
  end
  return '"' .. string_gsub(s, '[%c"\\]', escape_char) .. '"'
end

-- (The text is kept in a local before it is returned: the handled answer writes a number on
-- every delivery, and a tail call of a built-in stops its trace inside nginx, spec/jit_trace.lua.)
local function encode_number(v)
  local text
  if v ~= v or v == math_huge or v == -math_huge then
    text = "null"
  elseif v == math_floor(v) and v > -2^53 and v < 2^53 then
    text = string_format("%d", v)
  else
    text = string_format("%.17g", v)
  end
  return text
end

local encode_value

-- An empty list (an empty table is written as an object): json.EMPTY_ARRAY writes "[]".
local EMPTY_ARRAY = {}
_M.EMPTY_ARRAY = EMPTY_ARRAY

local function encode_table(t, depth)
  if depth > 32 then
    error("json.encode: nested deeper than 32 tables (a cycle?)", depth + 2)
  end
  if t == EMPTY_ARRAY then
    return "[]"
  end
  local n = #t
  local count = 0
  for _ in pairs(t) do
    count = count + 1
  end
  local parts = {}
  if n > 0 and count == n then
    for i = 1, n do
      parts[i] = encode_value(t[i], depth + 1)
    end
    return "[" .. table_concat(parts, ",") .. "]"
  end
  local keys = {}
  for k in pairs(t) do
    keys[#keys + 1] = tostring(k)
  end
  table_sort(keys)
  for i, k in ipairs(keys) do
    local v = t[k]
    if v == nil then
      v = t[tonumber(k)]
    end
    parts[i] = encode_string(k) .. ":" .. encode_value(v, depth + 1)
  end
  return "{" .. table_concat(parts, ",") .. "}"
end

function encode_value(v, depth)
  local kind = type(v)
  if kind == "string" then
    return encode_string(v)
  elseif kind == "number" then
    return encode_number(v)
  elseif kind == "boolean" then
    return v and "true" or "false"
  elseif kind == "table" then
    return encode_table(v, depth)
  end
  return "null"   -- nil, the null sentinel, and what JSON cannot hold
end

-- The JSON text of a string, a number, a boolean or a table of them.
function _M.encode(value)
  return encode_value(value, 0)
end

_M.encode_string = encode_string
_M.encode_number = encode_number

return _M
