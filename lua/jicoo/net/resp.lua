-- RESP2, the protocol Redis speaks: a command as the bytes a server reads, and one reply read
-- from a connection of jicoo.net.socket, bounded in bytes, in line length and in depth.
--
--   resp.encode(args, n) -> request | nil, why        a command of n arguments (strings, numbers)
--   resp.read_reply(conn, budget, depth) -> value | resp.ERROR_REPLY, message | nil, err
--
-- A status or a bulk string is a Lua string, an integer a number, an array a list, a nil bulk
-- string or array core.null; an error reply inside an array is { err = message }.
--
-- A built-in's result goes to a local before it is returned: inside nginx a function that ends
-- in a tail call of a built-in is a trace LuaJIT gives up on (spec/jit_trace.lua).
local type = type
local tonumber = tonumber
local string_find = string.find
local string_format = string.format
local string_sub = string.sub
local table_concat = table.concat
local math_floor = math.floor
local math_huge = math.huge
local math_type = math.type   -- nil before 5.3

local core = require "jicoo.webhook.core"
local runtime = require "jicoo.net.runtime"

local new_table = runtime.new_table

local _M = {}

local ERROR_REPLY = {}   -- what read_reply returns, with the message, for an error reply

-- What a reply may hold: a line (a status, an error, a size), arrays within arrays; and what
-- each line costs against max_reply beyond its bytes (about a Lua value's size).
local MAX_LINE = 65536
local MAX_DEPTH = 16
local ELEMENT_COST = 16
_M.ERROR_REPLY = ERROR_REPLY

-- A number as Redis reads it back unchanged (integers without a fraction or exponent).
local function number_text(v)
  if (math_type and math_type(v) == "integer")
      or (v == math_floor(v) and v > -2^53 and v < 2^53) then
    local text = string_format("%d", v)
    return text
  elseif v ~= v then
    return "nan"
  elseif v == math_huge or v == -math_huge then
    return v > 0 and "inf" or "-inf"
  end
  local text = string_format("%.15g", v)
  if tonumber(text) ~= v then
    text = string_format("%.17g", v)
  end
  return text
end

-- The bulk strings of n arguments (strings and numbers); or nil, the position and the type of
-- one that is neither.
local function bulk_strings(args, n)
  local parts = new_table(3 * n, 0)
  for i = 1, n do
    local arg = args[i]
    local kind = type(arg)
    if kind == "number" then
      arg = number_text(arg)
    elseif kind ~= "string" then
      return nil, i, kind
    end
    parts[3 * i - 2] = "$" .. #arg .. "\r\n"
    parts[3 * i - 1] = arg
    parts[3 * i] = "\r\n"
  end
  local bulk = table_concat(parts)
  return bulk
end

-- The request for one command (a list of n arguments), or nil and why not.
function _M.encode(args, n)
  local bulk, i, kind = bulk_strings(args, n)
  if not bulk then
    return nil, "argument " .. i .. " must be a string or a number, got " .. kind
  end
  return "*" .. n .. "\r\n" .. bulk
end

-- A size, a count or an integer as RESP writes it: decimal digits, a minus sign at most, nothing
-- else (no hex, exponent, fraction, nan or inf), 19 digits at most.
local function decimal(text)
  if #text <= 20 and string_find(text, "^%-?%d+$") then
    local n = tonumber(text)
    return n
  end
  return nil
end

-- One reply: the value; ERROR_REPLY, message for an error reply; or nil, err when the
-- connection failed or spoke something else than RESP. budget.left: the bytes the reply may
-- still take (each line and each array element costs a little more than its bytes, for the
-- memory it takes); depth: arrays around this one.
function _M.read_reply(conn, budget, depth)
  local line, crlf = conn:read_line(MAX_LINE)
  if not line then
    if crlf == "line too long" then
      return nil, "a reply line over " .. MAX_LINE .. " bytes"
    end
    return nil, crlf
  elseif not crlf then
    return nil, "a reply line not ended by CR LF: " .. string_format("%q", string_sub(line, 1, 40))
  end
  local left = budget.left - #line - ELEMENT_COST
  if left < 0 then
    return nil, "a reply over max_reply (" .. budget.max .. " bytes)"
  end
  budget.left = left
  local kind, rest = string_sub(line, 1, 1), string_sub(line, 2)
  if kind == "+" then
    return rest
  elseif kind == "-" then
    return ERROR_REPLY, rest
  elseif kind == ":" then
    local n = decimal(rest)
    if n then
      return n
    end
  elseif kind == "$" then
    local size = decimal(rest)
    if size == -1 then
      return core.null
    elseif size and size >= 0 then
      if size > left then
        return nil, "a reply over max_reply (" .. budget.max .. " bytes)"
      end
      budget.left = left - size
      local data, err = conn:read(size + 2)
      if not data then
        return nil, err
      elseif string_sub(data, -2) ~= "\r\n" then
        return nil, "a bulk string not followed by CR LF"
      end
      local bulk = string_sub(data, 1, size)
      return bulk
    end
  elseif kind == "*" then
    local count = decimal(rest)
    if count == -1 then
      return core.null
    elseif count and count >= 0 then
      if count * (ELEMENT_COST + 3) > left then
        return nil, "a reply over max_reply (" .. budget.max .. " bytes)"
      elseif depth >= MAX_DEPTH then
        return nil, "a reply nested deeper than " .. MAX_DEPTH .. " arrays"
      end
      local list = {}
      for i = 1, count do
        local value, msg = _M.read_reply(conn, budget, depth + 1)
        if value == nil then
          return nil, msg
        elseif value == ERROR_REPLY then
          value = { err = msg }
        end
        list[i] = value
      end
      return list
    end
  end
  return nil, "not a RESP reply: " .. string_format("%q", string_sub(line, 1, 40))
end

return _M
