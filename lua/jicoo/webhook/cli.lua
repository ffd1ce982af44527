-- The jicoo-webhook command: check, sign and verify deliveries, and replay them through
-- handler scripts. `main(args)` returns the exit status: 0 success, 1 failure, 2 usage error.

local argparse = require "argparse"

local type = type
local error = error
local pcall = pcall
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local string_match = string.match
local string_gsub = string.gsub
local string_find = string.find
local io_open = io.open
local io_stdin = io.stdin
local io_stdout = io.stdout
local io_stderr = io.stderr
local os_getenv = os.getenv

local _M = {}

local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
local SECRET_ENV = "JICOO_WEBHOOK_SECRET"

local webhook -- required when a command runs, so --help works without the C module

local function out(...)
  io_stdout:write(...)
  io_stdout:write("\n")
end

local function err_out(...)
  io_stderr:write(...)
  io_stderr:write("\n")
end

-- Raw bytes of a file, or of standard input for "-".
local function read_body(path)
  if path == "-" then
    local body = io_stdin:read("*a")
    if not body then
      return nil, "cannot read standard input"
    end
    return body
  end
  local file, open_err = io_open(path, "rb")
  if not file then
    return nil, "cannot open " .. tostring(open_err)
  end
  local body, read_err = file:read("*a")
  file:close()
  if not body then
    return nil, "cannot read " .. path .. ": " .. tostring(read_err)
  end
  return body
end

local function to_seconds(text)
  if not string_match(text, "^%d+$") then
    return nil, "expected whole Unix seconds, got '" .. text .. "'"
  end
  return tonumber(text)
end

local function describe_location(info)
  if info.path == "" then
    return "at JSON pointer \"\", the document root"
  elseif info.path then
    return "at " .. info.path
  elseif info.offset then
    return "at byte " .. info.offset
  end
  return "in the document"
end

local function require_secret(args)
  local secret = args.secret or os_getenv(SECRET_ENV)
  if not secret or secret == "" then
    return nil, "a secret is required: --secret S, or the environment variable " .. SECRET_ENV
  end
  return secret
end

---------------------------------------------------------------------------------------------
-- Commands

local function run_check(args)
  local level = args.strict and "strict" or "lenient"
  local status = EXIT_OK
  for _, path in ipairs(args.files) do
    local body, read_err = read_body(path)
    if not body then
      err_out(path, ": ", read_err)
      status = EXIT_FAILURE
    else
      local ev, msg, info = webhook.parse(body, { level = level })
      if ev then
        local note = ev:is_known() and "" or " (unknown event, accepted at the lenient level)"
        out(path, ": ok: ", ev.event, " ", ev.object.uid, note)
      else
        info = info or {}
        -- The parser's message names the pointer and offset; add what it leaves out.
        local where = ""
        if info.path == "" or (info.path and not string_find(msg, info.path, 1, true))
          or (not info.path and info.offset and not string_find(msg, "offset", 1, true)) then
          where = " (" .. describe_location(info) .. ")"
        end
        out(path, ": invalid: ", msg, where)
        status = EXIT_FAILURE
      end
    end
  end
  return status
end

-- The secret and the body of FILE that sign and verify need; or nil and the exit status (and
-- a usage message).
local function secret_and_body(args)
  local secret, secret_err = require_secret(args)
  if not secret then
    return nil, nil, EXIT_USAGE, secret_err
  end
  local body, read_err = read_body(args.file)
  if not body then
    err_out(args.file, ": ", read_err)
    return nil, nil, EXIT_FAILURE
  end
  return secret, body
end

local function run_sign(args)
  local secret, body, status, usage = secret_and_body(args)
  if not secret then
    return status, usage
  end
  out(webhook.sign(secret, body, args.time))
  return EXIT_OK
end

local function run_verify(args)
  local secret, body, status, usage = secret_and_body(args)
  if not secret then
    return status, usage
  end
  local ok, msg, code = webhook.verify(body, args.header, secret,
    { tolerance = args.tolerance, now = args.now })
  if ok then
    out(args.file, ": signature valid")
    return EXIT_OK
  end
  out(args.file, ": signature invalid (", tostring(code), "): ", tostring(msg))
  return EXIT_FAILURE
end

local function parse_settings(list)
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

local function run_replay(args)
  local config, config_err = parse_settings(args.set)
  if not config then
    return EXIT_USAGE, config_err
  end
  local router = webhook.router({
    verify = false,
    level = args.strict and "strict" or "lenient",
    config = config,
    log = function(level, message)
      out("  [", level, "] ", (string_gsub(message, "\n", "\n    ")))
    end,
  })

  local status = EXIT_OK
  local loaded, load_err = router:load(args.dir)
  if not loaded then
    err_out("jicoo-webhook run: cannot load every handler script in ", args.dir, ":\n", load_err)
    status = EXIT_FAILURE
  elseif loaded == 0 then
    err_out("jicoo-webhook run: no handler scripts (<event>.lua or any.lua) in ", args.dir)
  end

  for _, path in ipairs(args.files) do
    out("== ", path)
    local body, read_err = read_body(path)
    if not body then
      err_out(path, ": ", read_err)
      status = EXIT_FAILURE
    else
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
          local where = problem.path and (" " .. describe_location(problem)) or ""
          out("  ", problem.stage, " error", where, ": ", tostring(problem.message))
        end
      end
      out("  -> ", res.status, " ", res.body)
      if res.status ~= 200 then
        status = EXIT_FAILURE
      end
    end
  end
  return status
end

---------------------------------------------------------------------------------------------
-- Arguments

local function seconds_option(text)
  return to_seconds(text)
end

local function build_parser()
  local parser = argparse("jicoo-webhook",
    "Check, sign and verify Jicoo webhook deliveries, and replay them through handler scripts.")
    :epilog("Exit status: 0 success, 1 a check or verification failed, 2 usage error.\n"
      .. "FILE '-' reads standard input.")
  parser:command_target("command")

  local check = parser:command("check", "Validate payload files; print each error with its JSON"
    .. " pointer.")
  check:flag("--strict", "Check the documented contract (strict level) instead of the lenient"
    .. " level used when receiving.")
  check:argument("files", "Payload files."):args("+")

  local sign = parser:command("sign", "Print the Jicoo-Webhook-Signature header for a payload"
    .. " file.")
  sign:option("--secret", "Endpoint signing secret (default: $" .. SECRET_ENV .. ").")
  sign:option("--time", "Signing time in Unix seconds (default: now)."):convert(seconds_option)
  sign:argument("file", "Payload file.")

  local verify = parser:command("verify", "Verify a Jicoo-Webhook-Signature header against a"
    .. " payload file.")
  verify:option("--secret", "Endpoint signing secret (default: $" .. SECRET_ENV .. ").")
  verify:option("--header", "The Jicoo-Webhook-Signature header value."):count(1)
  verify:option("--tolerance", "Seconds the signing time may differ from now; 0 turns the"
    .. " time check off.", "300"):convert(seconds_option)
  verify:option("--now", "Take this Unix time as now (default: the clock)."):convert(seconds_option)
  verify:argument("file", "Payload file.")

  local run = parser:command("run", "Replay payload files through the handler scripts in DIR"
    .. " (signature check off); print what each handler did.")
  run:flag("--strict", "Parse at the strict level.")
  run:option("--set", "Set ctx.config.NAME = VALUE for the handlers (repeatable)."):args(1)
    :count("*"):argname("NAME=VALUE")
  run:argument("dir", "Folder with <event>.lua and any.lua handler scripts.")
  run:argument("files", "Payload files, replayed in order."):args("+")

  return parser
end

local COMMANDS = {
  check = run_check,
  sign = run_sign,
  verify = run_verify,
  run = run_replay,
}

-- Runs the command line `args` (a list of strings, like the global `arg`); returns the exit
-- status.
function _M.main(args)
  local parser = build_parser()
  -- Usage errors come back here (argparse would exit with status 1 itself).
  parser.error = function(command, message)
    error({ usage = command:get_usage(), message = message }, 0)
  end

  local list = {}
  for i, value in ipairs(args or {}) do
    list[i] = value
  end
  local ok, parsed = pcall(parser.parse, parser, list)
  if not ok then
    if type(parsed) == "table" and parsed.usage then
      err_out(parsed.usage, "\n\nError: ", parsed.message)
      return EXIT_USAGE
    end
    error(parsed, 0)
  end

  webhook = webhook or require "jicoo.webhook"
  local status, usage_err = COMMANDS[parsed.command](parsed)
  if status == EXIT_USAGE then
    err_out("jicoo-webhook ", parsed.command, ": ", usage_err)
  end
  io_stdout:flush()
  return status
end

_M.EXIT_OK, _M.EXIT_FAILURE, _M.EXIT_USAGE = EXIT_OK, EXIT_FAILURE, EXIT_USAGE

return _M
