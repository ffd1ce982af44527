-- jicoo-webhook run: replays deliveries through a folder of handler scripts, printing what each
-- handler did.
local ipairs = ipairs
local tostring = tostring
local require = require
local string_match = string.match
local string_gsub = string.gsub
local string_format = string.format
local math_floor = math.floor

local cli_io = require "jicoo.webhook.cli.io"
local ngx_standin = require "jicoo.webhook.cli.ngx"

local out, err_out, read = cli_io.out, cli_io.err, cli_io.read
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

local webhook = require "jicoo.webhook"

-- --set NAME=VALUE, as ctx.config: the table, or nil and a usage message.
function _M.parse_settings(list)
  local config = {}
  for _, item in ipairs(list or {}) do
    local name, value = string_match(item, "^([^=]+)=(.*)$")
    if not name then
      return nil, "--set expects NAME=VALUE, got '" .. item .. "'"
    end
    config[name] = value
  end
  return config
end

function _M.run(args)
  local config, config_err = _M.parse_settings(args.set)
  if not config then
    return EXIT_USAGE, config_err
  end
  local function log(level, message)
    out("  [", level, "] ", (string_gsub(message, "\n", "\n    ")))
  end
  local router = webhook.router({
    verify = false,
    level = args.strict and "strict" or "lenient",
    config = config,
    log = log,
  })
  -- the scripts' `ngx`, theirs alone: the library itself must not think it runs in nginx
  local stand = ngx_standin.new({ log = log })

  local status = EXIT_OK
  local loaded, load_err, failures = router:load(args.dir, { env = { ngx = stand.ngx } })
  if not loaded then
    if not failures or #failures == 0 or failures[1].file == args.dir then
      -- nothing loaded (no folder, no script): nothing to replay through
      err_out("jicoo-webhook run: ", load_err)
      return EXIT_FAILURE
    end
    err_out("jicoo-webhook run: cannot load every handler script in ", args.dir, ":\n", load_err)
    status = EXIT_FAILURE
  end

  for _, path in ipairs(args.files) do
    out("== ", path)
    local body, read_err = read(path)
    if not body then
      err_out(read_err)
      status = EXIT_FAILURE
    else
      stand:new_request()
      local res = router:handle(body, {})
      for _, ran in ipairs(res.handlers or {}) do
        if ran.ok then
          out("  ran ", ran.handler)
        else
          out("  FAILED ", ran.handler, ": ", ran.error)
        end
      end
      for _, problem in ipairs(res.errors) do
        if problem.stage ~= "handler" then
          out("  ", problem.stage, " error: ", tostring(problem.message))
        end
      end
      out("  -> ", res.status, " ", res.body)
      if res.status ~= 200 then
        status = EXIT_FAILURE
      end
    end
  end
  if stand:pending_timers() > 0 then
    -- nginx would run them after the answers; here, before the command exits
    out("== timers")
    local _, failed = stand:run_timers(function(timer)
      -- when it was due, in seconds from the start of the replay, to a tenth
      local when = string_format("+%gs", math_floor(timer.at * 10 + 0.5) / 10)
      if timer.ok then
        out("  ran timer ", timer.label, " (", when, timer.premature and ", premature" or "", ")")
      else
        out("  FAILED timer ", timer.label, " (", when, "): ", timer.error)
      end
    end)
    if failed > 0 then
      status = EXIT_FAILURE
    end
  end
  return status
end

return _M
