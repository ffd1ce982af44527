-- The jicoo-webhook command's arguments: every command, option and help text (argparse), the
-- one place they are written (the manual page and the completion are made from them).
local ipairs = ipairs
local pairs = pairs
local tonumber = tonumber
local require = require
local string_match = string.match
local string_gsub = string.gsub
local string_find = string.find
local table_concat = table.concat
local table_sort = table.sort

local _M = {}

local SECRET_ENV = "JICOO_WEBHOOK_SECRET"

-- The options whose value is a number of seconds, which may be written negative (and is then
-- refused with a message rather than taken for an option).
local SECONDS_OPTIONS = { ["--tolerance"] = true, ["--now"] = true, ["--time"] = true }

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

function _M.build(argparse)
  local example = require "jicoo.webhook.cli.example"
  local filters = require "jicoo.webhook.cli.deliveries_filters"
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
    .. " (signature check off); print what each handler did. The scripts get a stand-in ngx"
    .. " (ngx.log, ngx.shared dicts in memory, timers run before exit, ...).")
  run:flag("--strict", "Parse at the strict level.")
  run:option("--set", "Set ctx.config.NAME = VALUE for the handlers (repeatable)."):args(1)
    :count("*"):argname("NAME=VALUE")
  run:argument("dir", "Folder with <event>.lua and any.lua handler scripts.")
  run:argument("files", "Payload files, replayed in order."):args("+")

  local check_handlers = parser:command("check-handlers", "Load folders of handler scripts as"
    .. " the receiver would and report each script: ok, or broken and why.")
  check_handlers:argument("dirs", "Folders with <event>.lua, any.lua and dead_letter.lua"
    .. " scripts."):args("+"):argname("DIR")

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
    .. " list, show, retry or drop them, one by its key or every one a filter chooses; count"
    .. " them.")
  deliveries:command_target("action")
  local function journal_options(command)
    command:option("--journal", "The journal's folder, holding its database (default:"
      .. " $JICOO_JOURNAL_DIR).")
      :argname("DIR")
    command:option("--redis", "The Redis journal's server, sentinel://HOST:PORT,.../NAME for"
      .. " the master Redis Sentinel knows as NAME, or cluster://HOST:PORT,... for a Redis"
      .. " Cluster (default: $JICOO_REDIS; passwords in $JICOO_REDIS_PASSWORD and"
      .. " $JICOO_REDIS_SENTINEL_PASSWORD).")
      :argname("HOST:PORT")
  end
  -- The options that choose deliveries, and how a command's matches are printed.
  local function filter_options(command, action, default_states)
    local choices = filters.STATE_CHOICES[action]
    command:option("--state", "Which states: " .. table_concat(choices, ", ") .. ", or several"
      .. " comma-separated (default: " .. default_states .. ").")
      :argname("STATE"):convert(function(text) return filters.parse_states(text, choices) end)
    command:option("--event", "Only deliveries of this event."):argname("EVENT")
    command:option("--uid", "Only deliveries of this booking uid."):argname("UID")
    command:option("--since", "Only deliveries received at or after TIME: ISO 8601 with a time"
      .. " zone (2024-03-01T10:00:00Z), a date (UTC), or a duration ago (30m, 2h, 3d).")
      :argname("TIME"):convert(function(text) return filters.parse_time("--since", text) end)
    command:option("--until", "Only deliveries received before TIME (as --since).")
      :target("until"):argname("TIME")
      :convert(function(text) return filters.parse_time("--until", text) end)
    command:option("--error", "Only deliveries with TEXT in an error's handler or message.")
      :argname("TEXT")
    command:option("--limit", "At most N deliveries."):argname("N"):convert(filters.parse_limit)
    command:flag("--json", "One JSON object a delivery and line (no body); the count line goes"
      .. " to standard error.")
  end

  local list = deliveries:command("list", "One line per delivery: its state, its key, its"
    .. " attempts, when it runs next, its last error; then how many, by state.")
  journal_options(list)
  filter_options(list, "list", "all but done")
  list:flag("--body", "With --json, each delivery's body too.")

  local show = deliveries:command("show", "Print a delivery's record (its attempts, when it was"
    .. " retried, its errors) and body; by booking uid, every delivery of that booking.")
  journal_options(show)
  show:argument("key", "The delivery's key (event/uid/createdAt), as list prints it, or a"
    .. " booking uid."):argname("KEY|UID")

  for _, action in ipairs({
    { "retry", "Make failed or dead deliveries due now, with a new budget of attempts (their"
      .. " attempts go on counting); the receiver's scheduler runs the handlers that have not"
      .. " succeeded. One by its KEY, or every match with --all.", "failed,dead" },
    { "drop", "Remove deliveries from the journal: one by its KEY, or every match with --all"
      .. " and --yes.", "failed,dead" },
  }) do
    local command = deliveries:command(action[1], action[2])
    journal_options(command)
    command:argument("key", "The delivery's key (event/uid/createdAt), as list prints it.")
      :args("?")
    filter_options(command, action[1], action[3])
    command:flag("--all", "Act on every delivery the filters choose (default --state: "
      .. action[3] .. ").")
    command:flag("--dry-run", "Print what would change, and change nothing."):target("dry_run")
    if action[1] == "drop" then
      command:flag("--yes", "Confirm drop --all.")
    end
  end

  local stats = deliveries:command("stats", "Count the deliveries in the journal by state and"
    .. " by event.")
  journal_options(stats)
  stats:flag("--json", "One JSON object: total, states, events.")

  local import = deliveries:command("import", "Move the records of a file journal (the journal"
    .. " before SQLite: folders open/, done/, dead/) into the journal's database, then remove"
    .. " them.")
  import:option("--journal", "The journal's folder, holding its database (default:"
    .. " $JICOO_JOURNAL_DIR).")
    :argname("DIR")
  import:option("--from-files", "The file journal's folder (often the same folder)."):argname("DIR")
    :count(1)

  local reconcile = parser:command("reconcile", "List the bookings created, rescheduled or"
    .. " cancelled since a time (Jicoo's API) whose delivery the journal lacks; with --deliver,"
    .. " run them through the handler scripts, once each.")
  reconcile:option("--since", "How far back: a duration (30m, 2h, 3d) or a time (RFC 3339, or"
    .. " YYYY-MM-DD in UTC)."):count(1):argname("WHEN")
  journal_options(reconcile)
  reconcile:flag("--json", "Print one JSON object per line, the count last.")
  reconcile:flag("--deliver", "Run each missing delivery through the handlers in --handlers,"
    .. " journaled under its own key (ctx.source is \"reconcile\").")
  reconcile:option("--handlers", "Folder with <event>.lua and any.lua handler scripts, as run"
    .. " takes it (for --deliver)."):argname("DIR")
  reconcile:option("--set", "Set ctx.config.NAME = VALUE for the handlers (repeatable)."):args(1)
    :count("*"):argname("NAME=VALUE")
  reconcile:option("--api-key", "Jicoo API key (default: $JICOO_API_KEY)."):target("api_key")
    :argname("KEY")
  reconcile:option("--api-url", "Jicoo's API (default: $JICOO_API_URL, else"
    .. " https://api.jicoo.com/v1)."):target("api_url"):argname("URL")
  reconcile:option("--ca-file", "Trusted CA certificates for HTTPS (default: the system's)."):target(
    "ca_file"):argname("FILE")
  reconcile:option("--timeout", "Milliseconds for each request's connection and each read.",
    "10000"):convert(tonumber)

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
function _M.join_negative_seconds(args)
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

return _M
