-- jicoo-webhook deliveries: the journal of deliveries a receiver keeps, for an operator: list,
-- show, retry (make due now) and drop, over a file journal or a Redis journal.
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local string_match = string.match
local string_gsub = string.gsub
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort
local os_getenv = os.getenv
local os_time = os.time

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out, iso_time = cli_io.out, cli_io.err, cli_io.iso_time
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
    local host, port = string_match(address, "^(.-):(%d+)$")
    local password = os_getenv("JICOO_REDIS_PASSWORD")
    return journal.redis({ host = host or address, port = tonumber(port) or 6379,
      password = password ~= "" and password or nil })
  end
  return nil, "which journal? --journal DIR (the journal's folder) or --redis HOST:PORT"
end

local function first_error(record)
  local e = record.errors and record.errors[1]
  if not e then
    return nil
  end
  return field((string_gsub(tostring(e.handler) .. ": " .. tostring(e.message), "\n", " ")))
end

local function summary_line(record)
  if record.state == "corrupt" then   -- a record the journal cannot read: where, and why
    return "corrupt " .. field(record.file) .. ": " .. field(record.message)
  end
  local parts = { record.state, field(record.key), "attempts=" .. tostring(record.attempts) }
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

local PAGE = 1000

-- Prints the records of the states asked for, a page at a time (a journal of 100,000 dead
-- letters is never all in memory): each state's, oldest first. true, or nil, err.
local function print_states(journal, state)
  local states = state == "open" and { "running", "failed", "dead" }
    or state == "all" and { false } or { state }
  for _, one in ipairs(states) do
    local after
    repeat
      local page, next_after = journal:find({ state = one or nil, limit = PAGE, after = after })
      if not page then
        return nil, next_after
      end
      local lines = {}
      for i, record in ipairs(page) do
        lines[i] = summary_line(record)
      end
      if #lines > 0 then
        out(table_concat(lines, "\n"))
      end
      after = next_after
    until after == nil
  end
  return true
end

local function run_list(args, journal)
  local ok, err = print_states(journal, args.state or "open")
  if not ok then
    err_out("jicoo-webhook deliveries list: ", err)
    return EXIT_FAILURE
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
  out("key:          ", field(record.key))
  out("state:        ", field(record.state))
  out("event:        ", field(record.event))
  out("uid:          ", field(record.uid))
  out("received:     ", iso_time(record.received_at))
  out("attempts:     ", tostring(record.attempts))
  if record.state == "failed" then
    out("next attempt: ", iso_time(record.next_at))
  elseif record.state == "running" then
    out("lease until:  ", iso_time(record.lease_until))
  elseif record.finished_at then
    out("finished:     ", iso_time(record.finished_at))
  end
  out("succeeded:    ", #done > 0 and field(table_concat(done, ", ")) or "-")
  for i, e in ipairs(record.errors or {}) do
    out(i == 1 and "errors:       " or "              ", field(e.handler), ": ",
      (string_gsub(tostring(e.message), "\n", "\n                ")))
  end
  if record.body then
    out("body:")
    out(string_sub(record.body, -1) == "\n" and string_sub(record.body, 1, -2) or record.body)
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

local DELIVERY_ACTIONS = { list = run_list, show = run_show, retry = run_retry, drop = run_drop }

-- Runs `deliveries <action>`: the exit status (and a usage message with EXIT_USAGE).
function _M.run(args)
  if args.action == "import" then
    return run_import(args)
  end
  if args.key == "" then
    return EXIT_USAGE, "an empty key names no delivery: give one as `deliveries list` prints it"
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
