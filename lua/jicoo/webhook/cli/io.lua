-- What every jicoo-webhook command shares: its exit statuses, writing to the terminal, reading a
-- file (or standard input for "-"), and times as an operator reads them.
local math_floor = math.floor
local os_date = os.date
local type = type
local string_sub = string.sub
local io_stdin = io.stdin
local io_stdout = io.stdout
local io_stderr = io.stderr

local _M = {}

_M.EXIT_OK, _M.EXIT_FAILURE, _M.EXIT_USAGE = 0, 1, 2

function _M.out(...)
  io_stdout:write(...)
  io_stdout:write("\n")
end

function _M.err(...)
  io_stderr:write(...)
  io_stderr:write("\n")
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
