-- jicoo-webhook reconcile: the booking changes Jicoo never delivered (the receiver was down
-- longer than Jicoo retried). Lists the bookings changed since a time from Jicoo's API,
-- compares each with the journal by its uid and what its state implies (created: a booked
-- delivery; cancelled: a cancelled one; moved: a rescheduled one), prints those the journal
-- lacks and, with --deliver, runs them through the handler scripts as deliveries of their own
-- (router:deliver, router/reconcile.lua): journaled, so exactly once. What the API's booking
-- leaves open is guessed in jicoo.api's GUESSES.
local ipairs = ipairs
local pcall = pcall
local type = type
local tostring = tostring
local require = require
local string_match = string.match
local string_gsub = string.gsub
local table_sort = table.sort
local os_time = os.time
local os_getenv = os.getenv

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out, iso_time = cli_io.out, cli_io.err, cli_io.iso_time
local field = cli_io.printable
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local core = require "jicoo.webhook.core"
local json = require "jicoo.webhook.payload.json"

local _M = {}

-- Bookings read from the API at most (1,000 pages of 100): a list that does not end is
-- refused, not followed.
local MAX_BOOKINGS = 100000
-- A rescheduled delivery received this much before the booking's updatedAt still counts for
-- it: Jicoo's clock and the receiver's differ (the signature's tolerance, 300 s, says by how
-- much they may).
local CLOCK_SKEW = 300

-- --since as Unix seconds, read as every command reads a time (deliveries_filters.parse_time:
-- a duration back from now, an RFC 3339 time, or a date), and not in the future; or nil and a
-- usage message.
function _M.since_time(text, now)
  local t, why = require("jicoo.webhook.cli.deliveries_filters").parse_time("--since", text, now)
  if t and t > now then
    return nil, "--since " .. text .. " is in the future"
  end
  return t, why
end

local function time_of(value)
  if type(value) ~= "string" then
    return nil
  end
  return core.time(value)
end

-- The kind of an event name (booked, rescheduled, cancelled), from its last word.
local function kind_of(event)
  return type(event) == "string" and string_match(event, "_(%a+)$") or nil
end

-- The deliveries a booking implies since `since`, each { event, at (the envelope's createdAt),
-- kind, after (Unix seconds: a record of that kind received before it does not count) }; or
-- nil and why the booking cannot be read.
local function implied(api, booking, since)
  local created, updated = time_of(booking.createdAt), time_of(booking.updatedAt)
  if type(booking.uid) ~= "string" or booking.uid == "" or not created or not updated then
    return nil, "a booking without a uid, createdAt or updatedAt Jicoo's way"
  end
  local needs = {}
  if created >= since then
    needs[#needs + 1] = { event = "guest_booked", at = booking.createdAt, kind = "booked" }
  end
  if booking.status == "cancel" then
    local at = time_of(booking.cancelledAt) and booking.cancelledAt or booking.updatedAt
    if core.time(at) >= since then
      needs[#needs + 1] = { event = api.GUESSES.cancel_event(booking), at = at,
        kind = "cancelled" }
    end
  elseif updated >= since and api.GUESSES.rescheduled(booking) then
    needs[#needs + 1] = { event = api.GUESSES.reschedule_event, at = booking.updatedAt,
      kind = "rescheduled", after = updated - CLOCK_SKEW }
  end
  return needs
end

-- The journal's records of one booking, by kind: { booked = { received_at, ... }, ... }.
local function journaled(journal, uid)
  local kinds, after = {}, nil
  repeat
    local page, next_after = journal:find({ uid = uid, limit = 100, after = after })
    if not page then
      return nil, next_after
    end
    for _, record in ipairs(page) do
      local kind = kind_of(record.event)
      if kind and record.state ~= "corrupt" then
        local list = kinds[kind] or {}
        list[#list + 1] = record.received_at or 0
        kinds[kind] = list
      end
    end
    after = next_after
  until after == nil
  return kinds
end

local function is_handled(need, kinds)
  for _, received_at in ipairs(kinds[need.kind] or {}) do
    if not need.after or received_at >= need.after then
      return true
    end
  end
  return false
end

-- Every booking the API lists as changed since `since`, or nil and the API's message.
local function changed_bookings(api, client, since)
  local bookings = {}
  for items, msg in client:bookings(api.GUESSES.changed_since_query(iso_time(since))) do
    if not items then
      return nil, msg
    end
    for _, booking in ipairs(items) do
      if #bookings >= MAX_BOOKINGS then
        return nil, "Jicoo listed more than " .. MAX_BOOKINGS .. " bookings: give a later --since"
      end
      if type(booking) == "table" then
        bookings[#bookings + 1] = booking
      end
    end
  end
  return bookings
end

-- The missing deliveries, oldest first: { booking, need }, and how many bookings were looked
-- at; or nil and why.
local function find_missing(api, client, journal, since)
  local bookings, err = changed_bookings(api, client, since)
  if not bookings then
    return nil, err
  end
  local missing, unreadable = {}, 0
  for _, booking in ipairs(bookings) do
    local needs, why = implied(api, booking, since)
    if not needs then
      unreadable = unreadable + 1
      err_out("jicoo-webhook reconcile: skipped ", field(booking.uid), ": ", why)
    elseif #needs > 0 then
      local kinds, journal_err = journaled(journal, booking.uid)
      if not kinds then
        return nil, "journal: " .. tostring(journal_err)
      end
      for i, need in ipairs(needs) do
        if not is_handled(need, kinds) then
          missing[#missing + 1] = { booking = booking, need = need, order = i }
        end
      end
    end
  end
  table_sort(missing, function(a, b)
    local ta, tb = core.time(a.need.at), core.time(b.need.at)
    if ta ~= tb then
      return ta < tb
    elseif a.booking.uid ~= b.booking.uid then
      return a.booking.uid < b.booking.uid
    end
    return a.order < b.order
  end)
  return missing, #bookings, unreadable
end

local function line_of(item, as_json)
  local b, need = item.booking, item.need
  if as_json then
    return json.encode({ uid = b.uid, event = need.event, at = need.at, status = b.status,
      createdAt = b.createdAt, updatedAt = b.updatedAt, startedAt = b.startedAt,
      cancelledAt = b.cancelledAt })
  end
  return field(b.uid) .. " missing " .. field(need.event) .. " at=" .. field(need.at)
    .. " created=" .. field(b.createdAt) .. " updated=" .. field(b.updatedAt)
    .. " start=" .. field(b.startedAt)
end

-- The delivery a missing change would have been, as JSON: the booking as the API has it now.
local function delivery_body(api, client, item, contacts)
  local uid = item.booking.uid
  if contacts[uid] == nil then
    local list, msg, code = client:booking_contacts(uid)
    if not list and code ~= "not_found" then
      return nil, msg
    end
    contacts[uid] = type(list) == "table" and type(list[1]) == "table" and list[1] or false
  end
  return json.encode({ event = item.need.event, createdAt = item.need.at,
    object = api.GUESSES.webhook_object(item.booking, contacts[uid] or nil) })
end

-- Runs one missing delivery through the router and prints what happened; the exit status.
local function deliver_one(api, client, router, item, contacts, as_json)
  local name = field(item.booking.uid) .. " " .. field(item.need.event)
  local body, err = delivery_body(api, client, item, contacts)
  local res = body and router:deliver(body)
  if not res then
    err_out("jicoo-webhook reconcile: ", name, ": ", err)
    return EXIT_FAILURE
  end
  if as_json then
    out(json.encode({ uid = item.booking.uid, event = item.need.event, key = res.key,
      status = res.status, answer = res.body }))
  else
    for _, ran in ipairs(res.handlers or {}) do
      out("  ", ran.ok and "ran " or "FAILED ", ran.handler, ran.ok and "" or ": " .. ran.error)
    end
    for _, problem in ipairs(res.errors) do
      if problem.stage ~= "handler" then
        out("  ", problem.stage, " error: ", tostring(problem.message))
      end
    end
    out("  -> ", res.status, " ", res.body)
  end
  return res.status == 200 and EXIT_OK or EXIT_FAILURE
end

-- The router --deliver runs the deliveries through: the journal's, the scripts in --handlers.
local function delivery_router(args, journal)
  local config, config_err = require("jicoo.webhook.cli.run").parse_settings(args.set)
  if not config then
    return nil, config_err, EXIT_USAGE
  end
  -- (verify: router:deliver has nothing to verify, and this router serves no request)
  local router = require("jicoo.webhook").router({
    verify = false, journal = journal, config = config,
    log = function(level, message)
      out("  [", level, "] ", (string_gsub(message, "\n", "\n    ")))
    end,
  })
  local loaded, load_err = router:load(args.handlers)
  if not loaded then
    return nil, load_err, EXIT_FAILURE
  end
  return router
end

function _M.run(args)
  local now = os_time()
  local since, since_err = _M.since_time(args.since, now)
  if not since then
    return EXIT_USAGE, since_err
  end
  local ttl = require("jicoo.webhook.journal").DEFAULT_TTL
  if args.deliver and not args.handlers then
    return EXIT_USAGE, "--deliver runs the handler scripts of --handlers DIR: give it"
  elseif now - since > ttl then
    -- the journal forgets done deliveries after its ttl: older ones would look missing
    local message = "--since reaches past " .. ttl / 86400 .. " days, how long the journal keeps"
      .. " a done delivery: those the receiver handled before then are gone from it and would"
      .. " look missing"
    if args.deliver then
      return EXIT_USAGE, message
    end
    err_out("jicoo-webhook reconcile: warning: ", message)
  end
  local key = args.api_key or os_getenv("JICOO_API_KEY")
  if not key or key == "" then
    return EXIT_USAGE, "no Jicoo API key: set JICOO_API_KEY (or give --api-key)"
  end
  local api = require "jicoo.api"
  local made, client = pcall(api.client, { key = key, base_url = args.api_url,
    ca_file = args.ca_file, timeout = args.timeout,
    log = function(message) err_out("  [warn] ", message) end })
  if not made then
    return EXIT_USAGE, (string_gsub(tostring(client), "^.-jicoo%.api%.client: ", ""))
  end
  local journal, why, journal_status = require("jicoo.webhook.cli.deliveries").open_journal(args)
  if not journal then
    if journal_status then
      err_out("jicoo-webhook reconcile: ", why)
    end
    return journal_status or EXIT_USAGE, why
  end
  local router, router_err, router_status
  if args.deliver then
    router, router_err, router_status = delivery_router(args, journal)
    if not router then
      if router_status ~= EXIT_USAGE then
        err_out("jicoo-webhook reconcile: ", router_err)
      end
      return router_status, router_err
    end
  end

  local missing, looked, unreadable = find_missing(api, client, journal, since)
  if not missing then
    err_out("jicoo-webhook reconcile: ", looked)
    return EXIT_FAILURE
  end
  local status = unreadable > 0 and EXIT_FAILURE or EXIT_OK
  local contacts, delivered = {}, 0
  for _, item in ipairs(missing) do
    out(line_of(item, args.json))
    if router then
      if deliver_one(api, client, router, item, contacts, args.json) == EXIT_OK then
        delivered = delivered + 1
      else
        status = EXIT_FAILURE
      end
    end
  end
  if args.json then
    out(json.encode({ missing = #missing, bookings = looked, since = iso_time(since),
      delivered = router and delivered or nil }))
  else
    out(#missing, " missing, of ", looked, " bookings listed; changes since ", iso_time(since),
      router and "; " .. delivered .. " delivered" or "")
  end
  return status
end

return _M
