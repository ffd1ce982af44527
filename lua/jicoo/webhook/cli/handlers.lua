-- jicoo-webhook check-handlers DIR...: loads each folder of handler scripts as the receiver
-- would (each script in its world, any.lua first) and reports every script, so that a broken
-- edit is seen before a delivery meets it. Exit 1 when a script is broken or a folder holds
-- none.
local ipairs = ipairs
local tostring = tostring
local string_gsub = string.gsub

local cli_io = require "jicoo.webhook.cli.io"
local scripts = require "jicoo.webhook.router.scripts"
local ngx_standin = require "jicoo.webhook.cli.ngx"

local out = cli_io.out
local field = cli_io.printable
local EXIT_OK, EXIT_FAILURE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE

local _M = {}

local function what(script)
  local count = #script.handlers
  local handlers = count .. " handler" .. (count == 1 and "" or "s")
  if script.alarm then
    return "the dead-letter alarm"
  elseif script.event == "*" then
    return handlers .. " for every event"
  end
  return handlers .. " for " .. field(script.event) .. (script.unknown
    and " (not an event Jicoo is known to send: check the file's name)" or "")
end

function _M.run(args)
  local ok_count, broken = 0, 0
  -- a script that reads `ngx` as it loads (ngx.shared.NAME) gets the stand-in run gives
  local stand = ngx_standin.new({ log = function(level, message)
    out("  [", level, "] ", message)
  end })
  for _, dir in ipairs(args.dirs) do
    local loaded, err = scripts.load(dir, { ngx = stand.ngx })
    if not loaded then
      out("broken ", field(dir), ": ", field(err))
      broken = broken + 1
    elseif #loaded == 0 then
      out("broken ", field(dir), ": no handler scripts (<event>.lua, any.lua or dead_letter.lua)")
      broken = broken + 1
    end
    for _, script in ipairs(loaded or {}) do
      if script.handlers then
        out("ok     ", field(script.path), ": ", what(script))
        ok_count = ok_count + 1
      else
        -- the whole message, its traceback lines indented
        out("broken ", field(script.path), ": ",
          (string_gsub(tostring(script.error), "\n", "\n         ")))
        broken = broken + 1
      end
    end
  end
  out(ok_count + broken, " checked: ", ok_count, " ok, ", broken, " broken")
  return broken > 0 and EXIT_FAILURE or EXIT_OK
end

return _M
