-- What every jicoo-webhook command shares: its exit statuses, writing to the terminal, reading a
-- file (or standard input for "-"), and times as an operator reads them.
local math_floor = math.floor
local os_date = os.date
local select = select
local tostring = tostring
local type = type
local string_byte = string.byte
local string_find = string.find
local string_format = string.format
local string_sub = string.sub
local table_concat = table.concat
local io_stdin = io.stdin
local io_stdout = io.stdout
local io_stderr = io.stderr

local _M = {}

_M.EXIT_OK, _M.EXIT_FAILURE, _M.EXIT_USAGE = 0, 1, 2

-- The length of the well-formed UTF-8 sequence of two to four bytes at i (RFC 3629's table:
-- no overlong form, no surrogate, nothing past U+10FFFF), or nil.
local function utf8_length(text, i)
  local a, b, c, d = string_byte(text, i, i + 3)
  if a >= 0xC2 and a <= 0xDF then
    return b and b >= 0x80 and b <= 0xBF and 2 or nil
  end
  if not (b and c and b >= 0x80 and b <= 0xBF and c >= 0x80 and c <= 0xBF) then
    return nil
  end
  if a >= 0xE0 and a <= 0xEF then
    if (a == 0xE0 and b < 0xA0) or (a == 0xED and b > 0x9F) then
      return nil
    end
    return 3
  elseif a >= 0xF0 and a <= 0xF4 and d and d >= 0x80 and d <= 0xBF then
    if (a == 0xF0 and b < 0x90) or (a == 0xF4 and b > 0x8F) then
      return nil
    end
    return 4
  end
  return nil
end

local function escaped(byte)
  return string_format("\\x%02x", byte)
end

-- Text as a terminal may show it: every control byte (C0, DEL, and C1 written in UTF-8, which
-- some terminals obey) and every byte that is not part of well-formed UTF-8 is written as
-- \xNN, so that bytes from a delivery (a uid, a handler's error message) cannot move the
-- cursor, retitle the window or clear the screen. With `lines`, line ends and tabs stay.
function _M.printable(text, lines)
  text = tostring(text)
  if not string_find(text, lines and "[%z\1-\8\11-\31\127-\255]" or "[%z\1-\31\127-\255]") then
    return text
  end
  local parts, i, n = {}, 1, #text
  while i <= n do
    local byte = string_byte(text, i)
    if byte < 0x80 then
      if (byte < 0x20 or byte == 0x7F) and not (lines and (byte == 10 or byte == 9)) then
        parts[#parts + 1] = escaped(byte)
      else
        parts[#parts + 1] = string_sub(text, i, i)
      end
      i = i + 1
    else
      local length = utf8_length(text, i)
      if length and not (byte == 0xC2 and string_byte(text, i + 1) <= 0x9F) then
        parts[#parts + 1] = string_sub(text, i, i + length - 1)
        i = i + length
      else
        parts[#parts + 1] = escaped(byte)
        i = i + 1
      end
    end
  end
  return table_concat(parts)
end

local function write(file, ...)
  local parts = { ... }
  for i = 1, select("#", ...) do
    parts[i] = _M.printable(parts[i], true)
  end
  parts[#parts + 1] = "\n"
  file:write(table_concat(parts))
end

-- A line on standard output or standard error, made printable (line ends and tabs kept).
function _M.out(...)
  write(io_stdout, ...)
end

function _M.err(...)
  write(io_stderr, ...)
end

-- Raw bytes of a file, or of standard input for "-"; or nil, a message that names the file, and
-- the reason alone (for a line that already starts with the file's name).
function _M.read(path)
  if path == "-" then
    local body = io_stdin:read("*a")
    if not body then
      return nil, "cannot read standard input", "cannot read standard input"
    end
    return body
  end
  local body, err = require("jicoo.webhook.core").file_read(path)
  if not body then
    local named = "cannot open " .. path .. ": "   -- how core.file_read starts its message
    if string_sub(err, 1, #named) == named then
      return nil, err, string_sub(err, #named + 1)
    end
    return nil, err, err
  end
  return body
end

-- Unix seconds as UTC RFC 3339, to the second ("-" for none).
function _M.iso_time(t)
  if type(t) ~= "number" then
    return "-"
  end
  return os_date("!%Y-%m-%dT%H:%M:%SZ", math_floor(t))
end

return _M
