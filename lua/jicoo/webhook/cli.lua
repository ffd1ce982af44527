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
local io_stdin = io.stdin
local io_stdout = io.stdout
local io_stderr = io.stderr
local os_getenv = os.getenv
local os_date = os.date
local os_time = os.time
local math_floor = math.floor
local pairs = pairs
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort

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

-- Raw bytes of a file, or of standard input for "-"; or nil and a message that names the file.
local function read_body(path)
  if path == "-" then
    local body = io_stdin:read("*a")
    if not body then
      return nil, "cannot read standard input"
    end
    return body
  end
  return require("jicoo.webhook.core").file_read(path)
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
      err_out(read_err)
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
    err_out(read_err)
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
      err_out(read_err)
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
-- deliveries: the journal, for an operator

local function iso_time(t)
  if type(t) ~= "number" then
    return "-"
  end
  return os_date("!%Y-%m-%dT%H:%M:%SZ", math_floor(t))
end

-- The journal --journal or --redis names ($JICOO_JOURNAL_DIR, $JICOO_REDIS by default); or nil
-- and a usage message.
local function open_journal(args)
  local journal = require "jicoo.webhook.journal"
  local dir = args.journal or (not args.redis and os_getenv("JICOO_JOURNAL_DIR"))
  local address = args.redis or (not args.journal and os_getenv("JICOO_REDIS"))
  if dir and dir ~= "" and address and address ~= "" then
    return nil, "--journal and --redis name two journals: give one"
  elseif dir and dir ~= "" then
    return journal.files({ dir = dir })
  elseif address and address ~= "" then
    local host, port = string_match(address, "^(.-):(%d+)$")
    local password = os_getenv("JICOO_REDIS_PASSWORD")
    return journal.redis({ host = host or address, port = tonumber(port) or 6379,
      password = password ~= "" and password or nil })
  end
  return nil, "which journal? --journal DIR (the file journal's folder) or --redis HOST:PORT"
end

local function first_error(record)
  local e = record.errors and record.errors[1]
  if not e then
    return nil
  end
  return (string_gsub(tostring(e.handler) .. ": " .. tostring(e.message), "%c", " "))
end

local function summary_line(record)
  if record.state == "corrupt" then
    return "corrupt " .. record.file .. ": " .. record.error
  end
  local parts = { record.state, record.key, "attempts=" .. tostring(record.attempts) }
  if record.state == "failed" then
    parts[#parts + 1] = "next=" .. iso_time(record.next_at)
  elseif record.state == "running" then
    parts[#parts + 1] = "lease=" .. iso_time(record.lease_until)
  end
  local problem = first_error(record)
  if problem then
    parts[#parts + 1] = "error=" .. problem
  end
  return table_concat(parts, " ")
end

local function run_list(args, journal)
  local state = args.state or "open"
  local records, err = journal:list(state == "open" and "all" or state)
  if not records then
    err_out("jicoo-webhook deliveries list: ", err)
    return EXIT_FAILURE
  end
  local shown = {}
  for _, record in ipairs(records) do
    if state ~= "open" or record.state ~= "done" then
      shown[#shown + 1] = record
    end
  end
  table_sort(shown, function(a, b)
    local ta, tb = a.received_at or 0, b.received_at or 0
    if ta ~= tb then
      return ta < tb
    end
    return (a.key or a.file) < (b.key or b.file)
  end)
  for _, record in ipairs(shown) do
    out(summary_line(record))
  end
  return EXIT_OK
end

local function run_show(args, journal)
  local record, err = journal:get(args.key)
  if not record then
    err_out("jicoo-webhook deliveries show: ", err or (args.key .. ": not found"))
    return EXIT_FAILURE
  end
  local done = {}
  for label in pairs(record.handlers or {}) do
    done[#done + 1] = label
  end
  table_sort(done)
  out("key:          ", record.key)
  out("state:        ", record.state)
  out("event:        ", tostring(record.event))
  out("uid:          ", tostring(record.uid))
  out("received:     ", iso_time(record.received_at))
  out("attempts:     ", tostring(record.attempts))
  if record.state == "failed" then
    out("next attempt: ", iso_time(record.next_at))
  elseif record.state == "running" then
    out("lease until:  ", iso_time(record.lease_until))
  elseif record.finished_at then
    out("finished:     ", iso_time(record.finished_at))
  end
  out("succeeded:    ", #done > 0 and table_concat(done, ", ") or "-")
  for i, e in ipairs(record.errors or {}) do
    out(i == 1 and "errors:       " or "              ", tostring(e.handler), ": ",
      (string_gsub(tostring(e.message), "\n", "\n                ")))
  end
  if record.body then
    out("body:")
    io_stdout:write(record.body)
    if string_sub(record.body, -1) ~= "\n" then
      out()
    end
  end
  return EXIT_OK
end

local function run_retry(args, journal)
  local record, why = journal:rearm(args.key, os_time())
  if not record then
    err_out("jicoo-webhook deliveries retry: ", args.key, ": ", tostring(why))
    return EXIT_FAILURE
  end
  out(args.key, ": due now, with a new budget of attempts; the receiver's scheduler runs it")
  return EXIT_OK
end

local function run_drop(args, journal)
  local ok, err = journal:remove(args.key)
  if not ok then
    err_out("jicoo-webhook deliveries drop: ", args.key, ": ", tostring(err))
    return EXIT_FAILURE
  end
  out(args.key, ": dropped")
  return EXIT_OK
end

local DELIVERY_ACTIONS = { list = run_list, show = run_show, retry = run_retry, drop = run_drop }

local function run_deliveries(args)
  local journal, usage = open_journal(args)
  if not journal then
    return EXIT_USAGE, usage
  end
  return DELIVERY_ACTIONS[args.action](args, journal)
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

  local deliveries = parser:command("deliveries", "The journal of deliveries a receiver accepted:"
    .. " list failed and dead ones, show one with its body, retry or drop it.")
  deliveries:command_target("action")
  local function journal_options(command)
    command:option("--journal", "The file journal's folder (default: $JICOO_JOURNAL_DIR).")
      :argname("DIR")
    command:option("--redis", "The Redis journal's server (default: $JICOO_REDIS; password in"
      .. " $JICOO_REDIS_PASSWORD).")
      :argname("HOST:PORT")
  end
  local list = deliveries:command("list", "One line per delivery: its state, its key, its"
    .. " attempts, when it runs next, its last error.")
  journal_options(list)
  list:option("--state", "Which deliveries: failed, dead, done, running or all (default: all"
    .. " but done)."):choices({ "failed", "dead", "done", "running", "all" })
  for _, action in ipairs({
    { "show", "Print one delivery's record and body." },
    { "retry", "Make a failed or dead delivery due now, with a new budget of attempts; the"
      .. " receiver's scheduler runs the handlers that have not succeeded." },
    { "drop", "Remove a delivery from the journal." },
  }) do
    local command = deliveries:command(action[1], action[2])
    journal_options(command)
    command:argument("key", "The delivery's key (event/uid/createdAt), as list prints it.")
  end

  return parser
end

local COMMANDS = {
  check = run_check,
  sign = run_sign,
  verify = run_verify,
  run = run_replay,
  deliveries = run_deliveries,
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
