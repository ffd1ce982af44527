-- The jicoo-webhook command: check, sign, verify and send deliveries, replay them through handler
-- scripts, print example ones, and read the journal a receiver keeps. `main(args)` returns the
-- exit status: 0 success, 1 failure, 2 usage error. Each command with more than a few lines has
-- a module of its own beside this one (deliveries.lua, example.lua, send.lua).
local type = type
local error = error
local pcall = pcall
local ipairs = ipairs
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local require = require
local string_match = string.match
local string_gsub = string.gsub
local string_find = string.find
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort
local io_stdout = io.stdout
local os_getenv = os.getenv
local os_time = os.time

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out, read = cli_io.out, cli_io.err, cli_io.read
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

local SECRET_ENV = "JICOO_WEBHOOK_SECRET"
local VERSION = require "jicoo.webhook.version"

-- The options whose value is a number of seconds, which may be written negative (and is then
-- refused with a message rather than taken for an option).
local SECONDS_OPTIONS = { ["--tolerance"] = true, ["--now"] = true, ["--time"] = true }

-- The C core and the facade are required when a command runs, so that --help works without them.
local webhook

-- The secret from --secret or the environment; or nil, why. A secret with blanks around it is
-- a copy-paste gone wrong (from a dashboard, from an env file), not a secret.
local function secret_of(args)
  local secret = args.secret or os_getenv(SECRET_ENV)
  if not secret or secret == "" then
    return nil, "a secret is required: --secret S, or the environment variable " .. SECRET_ENV
  elseif string_find(secret, "^%s") or string_find(secret, "%s$") then
    return nil, "the secret " .. (args.secret and "given with --secret" or "in " .. SECRET_ENV)
      .. " starts or ends with whitespace (a copy-paste?): remove it"
  end
  return secret
end

---------------------------------------------------------------------------------------------
-- check

-- The .json files a list of files and folders names, each folder's in name order.
local function expand_files(paths)
  local core = require "jicoo.webhook.core"
  local files = {}
  for _, path in ipairs(paths) do
    local listing = path ~= "-" and core.file_list(path)
    if listing then
      local names = {}
      for name in pairs(listing) do
        if string_sub(name, -5) == ".json" then
          names[#names + 1] = name
        end
      end
      table_sort(names)
      local prefix = string_sub(path, -1) == "/" and path or path .. "/"
      for _, name in ipairs(names) do
        files[#files + 1] = prefix .. name
      end
    else
      files[#files + 1] = path
    end
  end
  return files
end

-- The parse options --strict and the limits give.
local function parse_options(args)
  local opts = { level = args.strict and "strict" or "lenient" }
  for name in pairs(webhook.limits) do
    opts[name] = args[name]
  end
  return opts
end

local function run_check(args)
  local opts = parse_options(args)
  local results, ok, invalid = {}, 0, 0
  for _, path in ipairs(expand_files(args.files)) do
    local body, _, why = read(path)
    local result = { file = path }
    if not body then
      result.ok, result.code, result.message = false, "unreadable", why
    else
      local ev, msg, info = webhook.parse(body, opts)
      if ev then
        result.ok, result.event, result.uid = true, ev.event, ev.object.uid
        result.known = ev:is_known()
      else
        result.ok, result.code, result.path, result.offset, result.message = false, info.code,
          info.path, info.offset, msg
      end
    end
    if result.ok then
      ok = ok + 1
    else
      invalid = invalid + 1
    end
    results[#results + 1] = result
    if not args.json then
      if result.ok then
        out(path, ": ok: ", result.event, " ", result.uid,
          result.known and "" or " (unknown event, accepted at the lenient level)")
      elseif result.code == "unreadable" then
        out(path, ": unreadable: ", result.message)
      else
        -- The parser's message names the code, the pointer (or the root) and the offset.
        out(path, ": invalid: ", result.message)
      end
    end
  end
  if args.json then
    out(require("jicoo.webhook.payload.json").encode({ files = results, ok = ok, invalid = invalid }))
  else
    out(ok, " ok, ", invalid, " invalid")
  end
  return invalid == 0 and EXIT_OK or EXIT_FAILURE
end

---------------------------------------------------------------------------------------------
-- sign, verify

-- The secret and the body of FILE that sign and verify need; or nil, nil, the exit status and
-- a message.
local function secret_and_body(args)
  local secret, secret_err = secret_of(args)
  if not secret then
    return nil, nil, EXIT_USAGE, secret_err
  end
  local body, read_err = read(args.file)
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
  local ok, msg = webhook.verify(body, args.header, secret,
    { tolerance = args.tolerance, now = args.now })
  if ok then
    out(args.file, ": signature valid")
    return EXIT_OK
  end
  out(args.file, ": signature invalid: ", tostring(msg))
  return EXIT_FAILURE
end

---------------------------------------------------------------------------------------------
-- run

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
  local loaded, load_err, failures = router:load(args.dir)
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
  return status
end

---------------------------------------------------------------------------------------------
-- example, completion, man

local function run_example(args)
  local example = require "jicoo.webhook.cli.example"
  local body = example.delivery(args.event, args.now and os_time() or nil)
  io_stdout:write(body)
  return EXIT_OK
end

---------------------------------------------------------------------------------------------
-- Arguments

-- The converter of an option taking whole seconds (a Unix time, or a duration), whose error
-- names the option: argparse prints it as it is.
local function seconds_option(option, what)
  return function(text)
    if not string_match(text, "^%d+$") then
      return nil, option .. " takes " .. what .. ", whole and 0 or more; got '" .. text .. "'"
    end
    return tonumber(text)
  end
end

-- The limits as options of check (--max-size N, ...), from the core's one table of limits.
local function limit_options(command)
  local core = require "jicoo.webhook.core"
  local names = {}
  for name in pairs(core.limits) do
    names[#names + 1] = name
  end
  table_sort(names)
  for _, name in ipairs(names) do
    -- (the defaults are not printed: max_key's differs between runtimes, and this text is
    -- also the manual page's)
    command:option("--" .. string_gsub(name, "_", "-"), "Override the limit " .. name
      .. " (docs/api.md, \"Limits\").")
      :target(name):argname("N"):convert(function(text)
        local n = tonumber(text)
        if not n or n < 1 or n % 1 ~= 0 then
          return nil, "expected a whole number of 1 or more, got '" .. text .. "'"
        end
        return n
      end)
  end
end

local function build_parser(argparse)
  local example = require "jicoo.webhook.cli.example"
  local parser = argparse("jicoo-webhook",
    "Check, sign, verify and send Jicoo webhook deliveries, replay them through handler"
    .. " scripts, and read the journal a receiver keeps.")
    :epilog("Exit status: 0 success, 1 a check, verification, delivery or handler failed, 2 usage"
      .. " error.\nFILE '-' reads standard input.")
  parser:command_target("command")
  parser:flag("--version", "Print the version and exit.")
  parser:require_command(false)
  parser:add_help_command()

  local check = parser:command("check", "Validate payload files and folders of them; print each"
    .. " error with its JSON pointer, then how many were ok and invalid.")
  check:flag("--strict", "Check the documented contract (strict level) instead of the lenient"
    .. " level used when receiving.")
  check:flag("--json", "Print one JSON document with every file's result, for scripts.")
  limit_options(check)
  check:argument("files", "Payload files, or folders of .json files."):args("+")

  local sign = parser:command("sign", "Print the Jicoo-Webhook-Signature header for a payload"
    .. " file.")
  sign:option("--secret", "Endpoint signing secret (default: $" .. SECRET_ENV .. ").")
  sign:option("--time", "Signing time in Unix seconds (default: now)."):convert(
    seconds_option("--time", "a time in Unix seconds"))
  sign:argument("file", "Payload file.")

  local verify = parser:command("verify", "Verify a Jicoo-Webhook-Signature header against a"
    .. " payload file.")
  verify:option("--secret", "Endpoint signing secret (default: $" .. SECRET_ENV .. ").")
  verify:option("--header", "The Jicoo-Webhook-Signature header value."):count(1)
  verify:option("--tolerance", "Seconds the signing time may differ from now; 0 turns the"
    .. " time check off.", "300"):convert(seconds_option("--tolerance", "seconds"))
  verify:option("--now", "Take this Unix time as now (default: the clock)."):convert(
    seconds_option("--now", "a time in Unix seconds"))
  verify:argument("file", "Payload file.")

  local send = parser:command("send", "Sign each payload file now and POST it to URL as Jicoo"
    .. " would; print each answer; exit 1 on an answer that is not a 2xx.")
  send:option("--secret", "Endpoint signing secret (default: $" .. SECRET_ENV .. ").")
  send:option("--timeout", "Milliseconds for the connection and each read.",
    "10000"):convert(tonumber)
  send:option("--ca-file", "Trusted CA certificates for HTTPS (default: the system's)."):target(
    "ca_file"):argname("FILE")
  send:argument("url", "The endpoint, http:// or https://.")
  send:argument("files", "Payload files, sent in order."):args("+")

  local run = parser:command("run", "Replay payload files through the handler scripts in DIR"
    .. " (signature check off); print what each handler did.")
  run:flag("--strict", "Parse at the strict level.")
  run:option("--set", "Set ctx.config.NAME = VALUE for the handlers (repeatable)."):args(1)
    :count("*"):argname("NAME=VALUE")
  run:argument("dir", "Folder with <event>.lua and any.lua handler scripts.")
  run:argument("files", "Payload files, replayed in order."):args("+")

  local example_command = parser:command("example", "Print a realistic delivery of EVENT, valid"
    .. " at the strict level, to try a receiver with.")
  example_command:flag("--now", "Stamp it with the current time (default: a fixed time, so that"
    .. " the output is always the same).")
  example_command:argument("event", "One of: " .. table_concat(example.EVENTS, ", ") .. ".")
    :choices(example.EVENTS)

  local nginx = parser:command("nginx", "Write a runnable nginx setup of the receiver into PREFIX"
    .. " (conf/nginx.conf with this installation's paths, and the folders it writes).")
  nginx:option("--listen", "Address and port to listen on.", "127.0.0.1:8080")
  nginx:option("--handlers", "A handler-script folder (repeatable; default: the example"
    .. " automations of a checkout)."):count("*"):argname("DIR")
  nginx:option("--workers", "nginx worker processes.", "1"):convert(tonumber)
  nginx:option("--core", "The folder holding jicoo/webhook/core.so built for LuaJIT (default:"
    .. " found beside this installation).")
    :argname("DIR")
  nginx:argument("prefix", "The folder nginx runs in (made if absent; an absolute path).")

  local deliveries = parser:command("deliveries", "The journal of deliveries a receiver accepted:"
    .. " list failed and dead ones, show one with its body, retry or drop it.")
  deliveries:command_target("action")
  local function journal_options(command)
    command:option("--journal", "The journal's folder, holding its database (default:"
      .. " $JICOO_JOURNAL_DIR).")
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

  local import = deliveries:command("import", "Move the records of a file journal (the journal"
    .. " before SQLite: folders open/, done/, dead/) into the journal's database, then remove"
    .. " them.")
  import:option("--journal", "The journal's folder, holding its database (default:"
    .. " $JICOO_JOURNAL_DIR).")
    :argname("DIR")
  import:option("--from-files", "The file journal's folder (often the same folder)."):argname("DIR")
    :count(1)

  local completion = parser:command("completion", "Print a shell completion script (bash, zsh"
    .. " or fish).")
  completion:argument("shell", "The shell."):choices({ "bash", "zsh", "fish" })
  parser:command("man", "Print the manual page (roff), made from the same text as --help.")
  parser:command("annotations", "Print where the Lua Language Server addon of the library is"
    .. " (annotations of the typed tables, ctx, the router, the journals), and the .luarc.json"
    .. " lines that use it.")

  return parser
end

-- "--tolerance -5" reads as the option and its value, so that the value is refused with a
-- message rather than taken for an unknown option "-5".
local function join_negative_seconds(args)
  local list, i = {}, 1
  while args[i] ~= nil do
    local a, value = args[i], args[i + 1]
    if SECONDS_OPTIONS[a] and value and string_find(value, "^%-") then
      list[#list + 1] = a .. "=" .. value
      i = i + 2
    else
      list[#list + 1] = a
      i = i + 1
    end
  end
  return list
end

local function run_send(args)
  local secret, secret_err = secret_of(args)
  if not secret then
    return EXIT_USAGE, secret_err
  end
  return require("jicoo.webhook.cli.send").run(args, secret)
end

local COMMANDS = {
  check = run_check,
  sign = run_sign,
  verify = run_verify,
  send = run_send,
  run = run_replay,
  example = run_example,
}

-- Runs the command line `args` (a list of strings, like the global `arg`); returns the exit
-- status.
function _M.main(args)
  local has_argparse, argparse = pcall(require, "argparse")
  if not has_argparse then
    err_out("jicoo-webhook needs the Lua module argparse: on Debian `apt-get install"
      .. " lua-argparse`, elsewhere `luarocks install argparse`")
    return EXIT_USAGE
  end
  local parser = build_parser(argparse)
  -- Usage errors come back here (argparse would exit with status 1 itself).
  parser.error = function(command, message)
    error({ usage = command:get_usage(), message = message }, 0)
  end

  local ok, parsed = pcall(parser.parse, parser, join_negative_seconds(args or {}))
  if not ok then
    if type(parsed) == "table" and parsed.usage then
      err_out(parsed.usage, "\n\nError: ", parsed.message)
      return EXIT_USAGE
    end
    error(parsed, 0)
  end

  local status, usage_err
  if parsed.version then
    out("jicoo-webhook ", VERSION)
    return EXIT_OK
  elseif parsed.command == nil then
    err_out(parser:get_usage(), "\n\nError: a command is required")
    return EXIT_USAGE
  elseif parsed.command == "completion" then
    io_stdout:write(parser["get_" .. parsed.shell .. "_complete"](parser))
    return EXIT_OK
  elseif parsed.command == "annotations" then
    return require("jicoo.webhook.cli.editors").run()
  elseif parsed.command == "man" then
    io_stdout:write(require("jicoo.webhook.cli.man").page(parser, VERSION))
    return EXIT_OK
  elseif parsed.command == "deliveries" or parsed.command == "nginx" then
    status, usage_err = require("jicoo.webhook.cli." .. parsed.command).run(parsed)
  else
    webhook = webhook or require "jicoo.webhook"
    status, usage_err = COMMANDS[parsed.command](parsed)
  end
  if status == EXIT_USAGE then
    err_out("jicoo-webhook ", parsed.command, ": ", usage_err)
  end
  io_stdout:flush()
  return status
end

_M.EXIT_OK, _M.EXIT_FAILURE, _M.EXIT_USAGE = EXIT_OK, EXIT_FAILURE, EXIT_USAGE

return _M
