-- A complete receiver for nginx, configured from the environment (the variables nginx.conf
-- passes on with `env`): one router per worker, serving a location, the journal's scheduler in
-- every worker. What examples/openresty/nginx.conf and `jicoo-webhook nginx` run; a site with
-- needs of its own builds the same from openresty.router, openresty.serve and
-- openresty.schedule.
--
--   init_by_lua_block        { require("jicoo.webhook.nginx.receiver").configure({ handlers = { ... } }) }
--   init_worker_by_lua_block { require("jicoo.webhook.nginx.receiver").init_worker() }
--   location = /jicoo/webhook { content_by_lua_block { require("jicoo.webhook.nginx.receiver").serve() } }
--   location = /jicoo/metrics { content_by_lua_block { require("jicoo.webhook.nginx.receiver").metrics() } }
--   location = /jicoo/health  { content_by_lua_block { require("jicoo.webhook.nginx.receiver").health() } }
--   location = /jicoo/stats   { content_by_lua_block { require("jicoo.webhook.nginx.receiver").stats() } }
--
-- The metrics are counted in the lua_shared_dict jicoo_metrics when nginx.conf has one (every
-- worker's counts add up there), else in each worker apart.
--
--   JICOO_WEBHOOK_SECRET      the endpoint's signing secret (required)
--   JICOO_WEBHOOK_SECRET_OLD  the previous secret while you rotate (optional)
--   JICOO_HANDLERS            handler-script folders, separated by ":" (default: configure's)
--   JICOO_OUTPUT_DIR          where the example automations write (ctx.config.output_dir;
--                             default: out/ in nginx's prefix)
--   JICOO_JOURNAL_DIR         the journal's folder, holding its SQLite database (default:
--                             journal/ in nginx's prefix)
--   JICOO_JOURNAL_DURABILITY  "full" (default: a 2xx means on disk) or "normal" (survives any
--                             process's crash; a power cut may lose the last moments)
--   JICOO_JOURNAL_MAX_OPEN    deliveries not done the journal holds at most (1000000); past it
--                             new ones are answered 503
--   JICOO_REDIS               host:port of a redis-server shared by several nginx machines:
--                             the journal (and so the claims) live there instead; or
--                             sentinel://host:port,host:port/NAME: the master Redis Sentinel
--                             knows as NAME, followed through a failover
--   JICOO_REDIS_PASSWORD      its password (optional)
--   JICOO_REDIS_SENTINEL_PASSWORD  the sentinels' password (optional)
--   JICOO_JOURNAL             "memory": no journal on disk, claims in the lua_shared_dict
--                             jicoo_claims (not durable; for benchmarks and trials)
--   JICOO_LEASE               seconds an attempt holds a delivery (default 300)
--   JICOO_RETRY_DELAYS        seconds between attempts, comma-separated; their count is the
--                             number of retries (default 60,300,900,3600,10800,21600,43200)
--   JICOO_ANSWER_FIRST        "1": answer 200 once journaled, run the handlers after
--   JICOO_ORDERED             "0": a booking's deliveries run as they come, not in order
--   JICOO_HANDLERS_CHECK      seconds between two looks at the handler folders (default 2; 0:
--                             never): an edited, added or removed script is loaded again
local openresty = require "jicoo.webhook.nginx.adapter"
local journal = require "jicoo.webhook.journal"
local redis = require "jicoo.net.redis"
local json = require "jicoo.webhook.payload.json"
local metrics = require "jicoo.webhook.router.metrics"
local store = require "jicoo.webhook.journal.claims"
local scripts = require "jicoo.webhook.router.scripts"

local ngx = ngx
local type = type
local ipairs = ipairs
local tostring = tostring
local tonumber = tonumber
local error = error
local rawget = rawget
local os_getenv = os.getenv

local _M = {}

local defaults = { handlers = {} }   -- configure's, read in the master, inherited by workers
local scripts_pool = "jicoo_journal"   -- nginx.conf's thread pool, which the journal uses too
local router          -- this worker's
local serve_options   -- and how it serves, both made in init_worker

local function setting(name)
  local value = os_getenv(name)
  if value == "" then
    return nil
  end
  return value
end

local function secrets()
  local list = { setting("JICOO_WEBHOOK_SECRET"), setting("JICOO_WEBHOOK_SECRET_OLD") }
  return list[1] and list or nil
end

local function handler_folders()
  local configured = setting("JICOO_HANDLERS")
  if not configured then
    return defaults.handlers
  end
  local folders = {}
  for folder in configured:gmatch("[^:]+") do
    folders[#folders + 1] = folder
  end
  return folders
end

-- A number from the environment, or nil when unset; a bad value stops the worker with a
-- message, rather than run with a setting nobody asked for.
local function number_setting(name)
  local value = setting(name)
  if value == nil then
    return nil
  end
  local number = tonumber(value)
  if not number or number < 0 then
    error(name .. " must be a number, got '" .. value .. "'")
  end
  return number
end

local function deliveries_journal()
  local address = setting("JICOO_REDIS")
  if address then
    local opts, why = redis.parse_url(address)
    if not opts then
      error("JICOO_REDIS: " .. why)
    end
    opts.password = setting("JICOO_REDIS_PASSWORD")
    opts.sentinel_password = opts.sentinels and setting("JICOO_REDIS_SENTINEL_PASSWORD")
    return journal.redis(opts)
  elseif setting("JICOO_JOURNAL") == "memory" then
    return journal.memory({ claims = store.shdict("jicoo_claims") })
  end
  return journal.sqlite({
    dir = setting("JICOO_JOURNAL_DIR") or (ngx.config.prefix() .. "journal"),
    durability = setting("JICOO_JOURNAL_DURABILITY"),
    max_open = number_setting("JICOO_JOURNAL_MAX_OPEN"),
  })
end


local function retry_delays()
  local value = setting("JICOO_RETRY_DELAYS")
  if value == nil then
    return nil
  end
  local delays = {}
  for item in (value .. ","):gmatch("([^,]*),") do
    local delay = tonumber(item)
    if not delay or delay < 0 then
      error("JICOO_RETRY_DELAYS must be seconds separated by commas, got '" .. value .. "'")
    end
    delays[#delays + 1] = delay
  end
  return delays
end

-- init_by_lua: the defaults of this nginx.conf (opts.handlers: the handler folders when
-- JICOO_HANDLERS is unset), and a refusal to start without a secret or without handlers, rather
-- than answer 500 to every delivery or handle them with nothing.
function _M.configure(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("receiver.configure: opts must be a table, got " .. type(opts), 2)
  end
  defaults = { handlers = opts and opts.handlers or {} }
  if not secrets() then
    error("JICOO_WEBHOOK_SECRET is not set (and `env JICOO_WEBHOOK_SECRET;` must be in nginx.conf)")
  end
  if #handler_folders() == 0 then
    error("no handler folders: set JICOO_HANDLERS (folders separated by ':'), or give"
      .. " configure({ handlers = { ... } }) in nginx.conf")
  end
end

-- Loads the handler folders into the router, in place of what it had (router:reload), and says
-- so: each broken script once, in the log and in health (router.script_failures). The scripts
-- that loaded run; each broken one fails its deliveries, which wait in the journal until it is
-- fixed.
local function load_handlers(folders, verb)
  local count, err, failures = router:reload(folders)
  if count then
    ngx.log(ngx.NOTICE, "jicoo-webhook: ", verb, " ", count, " handler(s) from ",
      table.concat(folders, ":"))
    return
  end
  for _, failure in ipairs(failures or {}) do
    local folder_problem = false
    for _, folder in ipairs(folders) do
      folder_problem = folder_problem or failure.file == folder
    end
    if folder_problem then
      ngx.log(ngx.ERR, "jicoo-webhook: ", failure.file, ": ", (tostring(failure.message):gsub("%c", " ")))
    else
      ngx.log(ngx.ERR, "jicoo-webhook: broken script ", failure.file, ": ",
        (tostring(failure.message):gsub("%c", " ")),
        "; its deliveries are journaled as failed until it is fixed")
    end
  end
  if not failures or #failures == 0 then
    ngx.log(ngx.ERR, "jicoo-webhook: ", err)
  end
end

-- A folder's stamp (scripts.stamp), read in nginx's thread pool; on the event loop when
-- nginx.conf has no pool (a few small files).
local function stamp_of(folder)
  local run_worker_thread = rawget(ngx, "run_worker_thread")
  if run_worker_thread then
    local ok, stamp = run_worker_thread(scripts_pool, "jicoo.webhook.router.scripts", "stamp",
      folder)
    if ok then
      return stamp
    end
  end
  return scripts.stamp(folder)
end

-- Every JICOO_HANDLERS_CHECK seconds (2; 0: never), each worker looks whether a script of its
-- folders was edited, added or removed, and loads them again if so: no `nginx -s reload`.
local function watch_handlers(folders)
  local interval = number_setting("JICOO_HANDLERS_CHECK") or 2
  if interval == 0 then
    return
  end
  local stamps = {}
  for i, folder in ipairs(folders) do
    stamps[i] = scripts.stamp(folder)   -- init_worker: the first on the event loop
  end
  local checking = false
  local ok, err = ngx.timer.every(interval, function(premature)
    if premature or checking then
      return
    end
    checking = true
    local changed = false
    for i, folder in ipairs(folders) do
      local stamp = stamp_of(folder)
      if stamp ~= stamps[i] then
        stamps[i], changed = stamp, true
      end
    end
    if changed then
      load_handlers(folders, "reloaded")
    end
    checking = false
  end)
  if not ok then
    ngx.log(ngx.ERR, "jicoo-webhook: cannot watch the handler folders: ", err)
  end
end

-- init_worker_by_lua: this worker's router, with every handler folder loaded, and its scheduler.
function _M.init_worker()
  serve_options = { answer_first = setting("JICOO_ANSWER_FIRST") == "1" }
  router = openresty.router({
    secrets = secrets(),
    tolerance = number_setting("JICOO_WEBHOOK_TOLERANCE"),
    journal = deliveries_journal(),
    lease = number_setting("JICOO_LEASE"),
    retry_delays = retry_delays(),
    config = { output_dir = setting("JICOO_OUTPUT_DIR") or (ngx.config.prefix() .. "out") },
    metrics = ngx.shared.jicoo_metrics,
    ordered = setting("JICOO_ORDERED") ~= "0",
  })
  local folders = handler_folders()
  load_handlers(folders, "loaded")
  watch_handlers(folders)
  openresty.schedule(router)
end

-- content_by_lua: one delivery.
function _M.serve()
  return openresty.serve(router, serve_options)
end

-- content_by_lua: the metrics, in Prometheus's text format.
function _M.metrics()
  local text = router:metrics()
  ngx.header["Content-Type"] = metrics.CONTENT_TYPE
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(text)
end

-- content_by_lua: 200 when the journal takes a write and the scheduler passed lately, else 503
-- naming what is wrong (router:health()), said in the error log too.
function _M.health()
  local res = router:health()
  if not res.ok then
    ngx.log(ngx.WARN, "jicoo-webhook: health: ", (table.concat(res.problems, "; "):gsub("%c", " ")))
  end
  ngx.status = res.status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Cache-Control"] = "no-store"
  ngx.say(res.body)
end

-- content_by_lua: the counts examples/openresty/handlers/any.lua keeps in the lua_shared_dict
-- jicoo_stats, as JSON.
function _M.stats()
  local dict = ngx.shared.jicoo_stats
  local counts = {}
  for _, key in ipairs(dict:get_keys(0)) do
    counts[key] = dict:get(key)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode(counts))
end

return _M
