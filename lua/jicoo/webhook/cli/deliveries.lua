-- jicoo-webhook deliveries: the journal of deliveries a receiver keeps, for an operator: list,
-- show, retry (make due now), drop and stats, over the SQLite journal or a Redis journal; retry
-- and drop act on one key, or on every delivery the filters choose (--all).
-- deliveries_filters.lua chooses the deliveries, deliveries_view.lua writes them.
local ipairs = ipairs
local tostring = tostring
local string_match = string.match
local os_getenv = os.getenv
local os_time = os.time

local cli_io = require "jicoo.webhook.cli.io"
local filters = require "jicoo.webhook.cli.deliveries_filters"
local view = require "jicoo.webhook.cli.deliveries_print"

local out, err_out = cli_io.out, cli_io.err
-- A field on one line: bytes from a delivery (a uid holding a line end or a terminal escape)
-- are shown escaped, never obeyed.
local field = cli_io.printable
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

-- A journal folder that is there, acted on as its owner: run by root on a journal that
-- nginx's workers own, the command becomes that user for good (as root it would leave files
-- the workers cannot use). true, or nil and why not.
local function act_as_owner(dir)
  local core = require "jicoo.webhook.core"
  local info, err = core.file_info(dir)
  if not info then
    return nil, "no journal at " .. dir .. " (" .. err .. "): give the folder the receiver"
      .. " journals in (JICOO_JOURNAL_DIR; PREFIX/journal for the setup `jicoo-webhook nginx`"
      .. " writes)"
  elseif info.kind ~= "folder" then
    return nil, dir .. " is a " .. info.kind .. ", not a journal's folder"
  end
  local uid = core.process_user()
  if uid == 0 and info.uid ~= 0 then
    local ok, why = core.switch_user(info.uid, info.gid)
    if not ok then
      return nil, "cannot act as " .. dir .. "'s owner (uid " .. info.uid .. "): " .. why
        .. "; run the command as that user"
    end
  end
  return true
end

-- The journal --journal or --redis names ($JICOO_JOURNAL_DIR, $JICOO_REDIS by default); or nil
-- and a usage message.
function _M.open_journal(args)
  local journal = require "jicoo.webhook.journal"
  local dir = args.journal or (not args.redis and os_getenv("JICOO_JOURNAL_DIR"))
  local address = args.redis or (not args.journal and os_getenv("JICOO_REDIS"))
  if dir and dir ~= "" and address and address ~= "" then
    return nil, "--journal and --redis name two journals: give one"
  elseif dir and dir ~= "" then
    local ok, why = act_as_owner(dir)
    if not ok then
      return nil, why, EXIT_FAILURE
    end
    return journal.sqlite({ dir = dir })
  elseif address and address ~= "" then
    local opts, why = require("jicoo.net.redis").parse_url(address)
    if not opts then
      return nil, "--redis: " .. why
    end
    local password = os_getenv("JICOO_REDIS_PASSWORD")
    opts.password = password ~= "" and password or nil
    if opts.sentinels then
      password = os_getenv("JICOO_REDIS_SENTINEL_PASSWORD")
      opts.sentinel_password = password ~= "" and password or nil
    end
    return journal.redis(opts)
  end
  return nil, "which journal? --journal DIR (the journal's folder) or --redis HOST:PORT"
    .. " (or sentinel://HOST:PORT,.../NAME, cluster://HOST:PORT,...)"
end

-- Prints a record's line (text or JSON); `result` names what a command did to it.
local function print_record(args, record, result, body)
  if args.json then
    view.json_line(record, result and { { "result", result } }, body)
  elseif result then
    out(result, " ", view.summary_line(record))
  else
    out(view.summary_line(record))
  end
end

-- The count line: on standard output, or on standard error with --json (standard output
-- then holds only the JSON lines).
local function print_count(args, n, by_state, what, notes)
  local line = view.count_line(n, by_state, what) .. (notes or "")
  if args.json then
    err_out(line)
  else
    out(line)
  end
end

-- list, retry and drop over the deliveries the options choose: act(record) for each match
-- (true, or false and why it was left, or nil and a failure that stops the walk). What it
-- says of them, and the exit status.
local function walk(args, journal, act, what)
  local states = args.state or filters.DEFAULT_STATES[args.action]
  local n, by_state, left = 0, {}, 0
  local ok, more = filters.each_match(journal, states, filters.filter_of(args), args.limit,
    function(record)
      local done, why = act(record)
      if done == nil then
        return nil, why
      elseif done == false then
        left = left + 1
        err_out("left ", record.key and field(record.key) or field(record.file), ": ", field(why))
        return true
      end
      n = n + 1
      by_state[record.state] = (by_state[record.state] or 0) + 1
      return true
    end)
  local notes = left > 0 and "; " .. left .. " left as they were" or ""
  if ok and more then
    notes = notes .. " (--limit " .. args.limit .. " reached: more match)"
  end
  print_count(args, n, by_state, what, notes)
  if not ok then
    err_out("jicoo-webhook deliveries ", args.action, ": ", more)
    return EXIT_FAILURE
  end
  return left > 0 and EXIT_FAILURE or EXIT_OK
end

local function run_list(args, journal)
  return walk(args, journal, function(record)
    local body
    if args.body and args.json and record.key and record.state ~= "corrupt" then
      local full, err = journal:get(record.key)
      if full == nil and err then
        return nil, err
      end
      body = full and full.body
    end
    print_record(args, record, nil, body)
    return true
  end)
end

-- show KEY|UID: the delivery of that key, else every delivery of that booking.
local function run_show(args, journal)
  local record, err = journal:get(args.key)
  if record then
    view.show(record)
    return EXIT_OK
  elseif err then
    err_out("jicoo-webhook deliveries show: ", err)
    return EXIT_FAILURE
  end
  local n, by_state = 0, {}
  local ok, why = filters.each_match(journal, { false }, { uid = args.key }, nil, function(found)
    local full = found
    if found.state ~= "corrupt" then
      local get_err
      full, get_err = journal:get(found.key)
      if full == nil then
        if get_err then
          return nil, get_err
        end
        return true   -- dropped meanwhile
      end
    end
    if n > 0 then
      out("")
    end
    view.show(full)
    n = n + 1
    by_state[full.state] = (by_state[full.state] or 0) + 1
    return true
  end)
  if not ok then
    err_out("jicoo-webhook deliveries show: ", why)
    return EXIT_FAILURE
  elseif n == 0 then
    err_out("jicoo-webhook deliveries show: ", args.key, ": not found (no delivery has this key"
      .. " or this booking uid)")
    return EXIT_FAILURE
  end
  out("")
  out(view.count_line(n, by_state, "of booking " .. field(args.key)))
  return EXIT_OK
end

-- retry and drop: the single KEY, or every match with --all; --dry-run changes nothing.
local ACTIONS = {
  retry = { done = "retried", would = "would retry", line = "would be retried",
    change = function(journal, record)
      return journal:rearm(record.key, os_time())
    end },
  drop = { done = "dropped", would = "would drop", line = "would be dropped",
    change = function(journal, record)
      return journal:remove(record.key)
    end },
}

-- What a retry or a drop does to one record: true, false and why it was left, or nil, err.
local function change(args, journal, record)
  local action = ACTIONS[args.action]
  if record.state == "corrupt" then
    return false, "corrupt (" .. tostring(record.message) .. ")"
  elseif args.action == "retry" and record.state ~= "failed" and record.state ~= "dead" then
    return false, "is " .. record.state .. ", not failed or dead"
  end
  if args.dry_run then
    print_record(args, record, action.would)
    return true
  end
  local ok, why = action.change(journal, record)
  if ok then
    print_record(args, record, action.done)
    return true
  elseif ok == false or why == "not found" then
    return false, why == "not found" and "gone meanwhile" or why
  end
  return nil, why
end

local function run_change(args, journal)
  local action = ACTIONS[args.action]
  local what = args.dry_run and action.line .. " (dry run: nothing changed)" or action.done
  if args.key then
    local record, err = journal:get(args.key)
    if not record then
      print_count(args, 0, {}, what)
      err_out("jicoo-webhook deliveries ", args.action, ": ", args.key, ": ",
        err or "not found")
      return EXIT_FAILURE
    end
    local ok, why = change(args, journal, record)
    print_count(args, ok and 1 or 0, ok and { [record.state] = 1 } or {}, what)
    if not ok then
      err_out("jicoo-webhook deliveries ", args.action, ": ", args.key, ": ",
        why and (string_match(why, "^is ") and args.key .. " " .. why or why) or "failed")
      return EXIT_FAILURE
    end
    return EXIT_OK
  end
  return walk(args, journal, function(record)
    return change(args, journal, record)
  end, what)
end

local function run_stats(args, journal)
  local counts, err = journal:counts()
  if not counts then
    err_out("jicoo-webhook deliveries stats: ", err)
    return EXIT_FAILURE
  end
  view.stats(counts, args.json)
  return EXIT_OK
end

-- import: the file journal in --from-files moved into the journal's database.
local function run_import(args)
  local dir = args.journal or os_getenv("JICOO_JOURNAL_DIR")
  if not dir or dir == "" then
    return EXIT_USAGE, "which journal? --journal DIR (the journal's folder)"
  end
  local ok, why = act_as_owner(dir)
  if ok then
    ok, why = act_as_owner(args.from_files)
  end
  if not ok then
    err_out("jicoo-webhook deliveries import: ", why)
    return EXIT_FAILURE
  end
  local files_import = require "jicoo.webhook.journal.files_import"
  if not files_import.present(args.from_files) then
    err_out("jicoo-webhook deliveries import: no file journal in ", args.from_files,
      " (no open/, done/ or dead/ folder)")
    return EXIT_FAILURE
  end
  local sqlite = require "jicoo.webhook.journal.sqlite"
  local read, written, problems = files_import.run(args.from_files, dir, { durability = "full",
    busy_timeout = sqlite.DEFAULT_BUSY_TIMEOUT })
  if not read then
    err_out("jicoo-webhook deliveries import: ", written, " (nothing was removed)")
    return EXIT_FAILURE
  end
  for _, problem in ipairs(problems) do
    err_out("left ", field(problem.file), ": ", field(problem.message))
  end
  out(read, " records in ", args.from_files, ": ", written, " written into ", dir, "/",
    "journal.db, ", read - written, " there already in a newer version; ", #problems, " left")
  return #problems > 0 and EXIT_FAILURE or EXIT_OK
end

local DELIVERY_ACTIONS = { list = run_list, show = run_show, retry = run_change,
  drop = run_change, stats = run_stats }

-- The arguments' mistakes argparse cannot see: a usage message, or nil.
local function usage_problem(args)
  if args.key == "" then
    return "an empty key names no delivery: give one as `deliveries list` prints it"
  elseif args.body and not args.json then
    return "--body goes with --json (a body is shown in JSON, or by `deliveries show`)"
  elseif args.action ~= "retry" and args.action ~= "drop" then
    return nil
  end
  local chosen = filters.has_filters(args) or args.limit
  if args.key and (args.all or chosen) then
    return "give a KEY, or --all with filters for every match, not both"
  elseif not args.key and not args.all then
    if chosen then
      return "filters choose many deliveries: add --all to " .. args.action .. " every match"
        .. " (--dry-run first shows them)"
    end
    return "which delivery? give its KEY, or --all (with filters) for every match"
  elseif args.action == "drop" and args.all and not args.yes and not args.dry_run then
    return "drop --all removes every match for good: add --yes (--dry-run first shows them)"
  end
  return nil
end

-- Runs `deliveries <action>`: the exit status (and a usage message with EXIT_USAGE).
function _M.run(args)
  if args.action == "import" then
    return run_import(args)
  end
  local problem = usage_problem(args)
  if problem then
    return EXIT_USAGE, problem
  end
  local journal, why, status = _M.open_journal(args)
  if not journal then
    if status then
      err_out("jicoo-webhook deliveries ", args.action, ": ", why)
      return status
    end
    return EXIT_USAGE, why
  end
  return DELIVERY_ACTIONS[args.action](args, journal)
end

return _M
