-- The router's options, declared once (options.lua's schema), and what they make: the settings a
-- router keeps. Every option parse takes (the core's, the limits included) is the router's too,
-- passed on to parse as it is; the core judges those and the tolerance now, as parse and verify
-- would, not on the first delivery.
local type = type
local pairs = pairs
local ipairs = ipairs
local pcall = pcall
local error = error
local tostring = tostring
local string_format = string.format
local io_stderr = io.stderr

local core = require "jicoo.webhook.core"
local options = require "jicoo.webhook.options"
local journal_module = require "jicoo.webhook.journal"
local claims = require "jicoo.webhook.journal.claims"
local metrics = require "jicoo.webhook.router.metrics"

local _M = {}

-- Seconds between attempts of a failed delivery (8 attempts over about 22 hours); each delay is
-- varied by up to a quarter either way, so that deliveries that failed together spread out.
_M.DEFAULT_RETRY_DELAYS = { 60, 300, 900, 3600, 10800, 21600, 43200 }
_M.DEFAULT_LEASE = 300

local function retry_delays(list)
  for _, delay in ipairs(list) do
    if type(delay) ~= "number" or delay < 0 then
      return false
    end
  end
  return true
end

local function clock(value)
  return type(value) == "number" or options.is_callable(value)
end

local OWN = {
  { "secrets", "any" },
  { "tolerance", "any" },   -- the core's verify judges it
  { "verify", "boolean", default = true },
  { "journal", "any", check = journal_module.is_journal,
    what = "a journal (acquire, update, due, get, list, rearm, remove)" },
  { "store", "any", check = claims.is_store,
    what = "a claim store with add(key, ttl) and delete(key)" },
  { "ttl", "number", check = options.positive, what = "a positive number of seconds" },
  { "lease", "number", default = _M.DEFAULT_LEASE, check = options.positive,
    what = "a positive number of seconds" },
  { "retry_delays", "table", default = _M.DEFAULT_RETRY_DELAYS, check = retry_delays,
    what = "a list of seconds (0 or more)" },
  { "now", "any", check = clock, what = "a number or a function (the clock, Unix seconds)" },
  { "log", "callable", what = "a function(level, message)" },
  { "config", "table", default = {} },
  { "http", "callable", what = "a function(request) -> response | nil, err" },
  { "ordered", "boolean", default = true },
  { "metrics", "any", check = metrics.is_dict,
    what = "a dict with incr, set, get and get_keys (an ngx.shared dict)" },
}
local PARSE_OPTION_NAMES = {}
for name, option in pairs(core.options) do
  if option.calls.parse then
    PARSE_OPTION_NAMES[#PARSE_OPTION_NAMES + 1] = name
    OWN[#OWN + 1] = { name, "any" }   -- the core judges them
  end
end
local SCHEMA = options.schema("webhook.router", OWN)

local function default_log(level, message)
  io_stderr:write("jicoo-webhook [", level, "] ", message, "\n")
end

-- The settings a router keeps, from its options (see the schema above); raises at the
-- router's caller on a misuse.
function _M.settings(opts)
  local o = SCHEMA:check(opts, 3)
  local verify = o.verify
  -- Secrets are verify's arguments, not options: verify judges them (it raises on bad ones) on
  -- an empty delivery, now rather than on the first one.
  if verify and (o.secrets == nil or not pcall(core.verify, "", nil, o.secrets)) then
    error("webhook.router: option 'secrets' (a secret or a list of secrets) is required unless"
      .. " verify is false", 3)
  end
  local parse_opts = {}
  for _, name in ipairs(PARSE_OPTION_NAMES) do
    parse_opts[name] = o[name]
  end
  local ok, err = pcall(core.check_options, "parse", parse_opts)
  if ok then
    ok, err = pcall(core.check_options, "verify", { tolerance = o.tolerance })
  end
  if not ok then
    error("webhook.router: " .. tostring(err), 3)
  end

  local journal = o.journal
  if journal ~= nil and o.store ~= nil then
    error("webhook.router: options 'journal' and 'store' exclude each other (a journal is its"
      .. " own claim store)", 3)
  elseif journal ~= nil and o.ttl ~= nil then
    error("webhook.router: option 'ttl' is the journal's own when 'journal' is given", 3)
  end
  if journal == nil then
    journal = journal_module.memory({ claims = o.store, ttl = o.ttl })
  elseif not claims.is_ours(journal) then
    journal = claims.guarded(journal, journal_module.METHODS)
  end
  local log = o.log or default_log
  -- A delivery is remembered for ttl after it is handled, and a captured copy of it verifies
  -- until its t is tolerance behind the clock; t may have been up to tolerance ahead of the
  -- clock when it was handled, so the copy verifies for up to 2 x tolerance after that.
  local remembered = type(journal.ttl) == "number" and journal.ttl or nil
  if verify then
    local tolerance = o.tolerance or core.options.tolerance.default
    if tolerance == 0 then
      -- kept for replaying old deliveries (the time check off, as verify takes it), and said
      log("warn", "webhook.router: tolerance = 0 accepts a signature of any age: a captured"
        .. " delivery runs again once its record expires (after ttl)")
    elseif remembered and remembered < 2 * tolerance then
      error(string_format("webhook.router: the journal's ttl (%g s) is shorter than twice the"
        .. " tolerance (%g s): a captured delivery could be replayed after its record expired"
        .. " and run again; make ttl at least %g s or the tolerance at most %g s", remembered,
        tolerance, 2 * tolerance, remembered / 2), 3)
    end
  end
  return {
    verify = verify,
    secrets = o.secrets,
    tolerance = o.tolerance,
    parse_opts = parse_opts,
    max_size = o.max_size or core.limits.max_size,
    journal = journal,
    lease = o.lease,
    retry_delays = o.retry_delays,
    now = o.now,
    log = log,
    config = o.config,
    http = o.http,
    metrics = metrics.new(o.metrics, log),
    ordered = o.ordered,
  }
end

return _M
