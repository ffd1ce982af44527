-- The receiver behind examples/openresty/nginx.conf: one router per nginx worker, configured
-- from the environment (declared with `env` in nginx.conf), serving /jicoo/webhook.
--
--   JICOO_WEBHOOK_SECRET      the endpoint's signing secret (required)
--   JICOO_WEBHOOK_SECRET_OLD  the previous secret while you rotate (optional)
--   JICOO_HANDLERS            handler-script folders, separated by ":" (default: this folder's
--                             handlers/ and the four automations in examples/)
--   JICOO_OUTPUT_DIR          where the example automations write (ctx.config.output_dir)
--   JICOO_REDIS               host:port of a redis-server shared by several nginx machines;
--                             unset: claims live in the lua_shared_dict jicoo_claims
--   JICOO_REDIS_PASSWORD      its password (optional)
--   JICOO_ANSWER_FIRST        "1": answer 200 before the handlers run (see the README)
local openresty = require "jicoo.webhook.openresty"
local store = require "jicoo.webhook.store"
local cjson = require "cjson.safe"

local _M = {}

local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

local router          -- this worker's
local serve_options   -- and how it serves, both made in init_worker

local function setting(name)
  local value = os.getenv(name)
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
  local folders = {}
  if configured then
    for folder in configured:gmatch("[^:]+") do
      folders[#folders + 1] = folder
    end
    return folders
  end
  local examples = HERE .. "../"
  return { HERE .. "handlers", examples .. "ledger", examples .. "notify",
    examples .. "cancellations", examples .. "campaigns" }
end

local function claims_store()
  local redis = setting("JICOO_REDIS")
  if not redis then
    return store.shdict("jicoo_claims")
  end
  local host, port = redis:match("^(.-):(%d+)$")
  return store.redis({
    host = host or redis,
    port = tonumber(port) or 6379,
    password = setting("JICOO_REDIS_PASSWORD"),
  })
end

-- init_by_lua: refuse to start without a secret, rather than answer 500 to every delivery.
function _M.check_environment()
  if not secrets() then
    error("JICOO_WEBHOOK_SECRET is not set (and `env JICOO_WEBHOOK_SECRET;` must be in nginx.conf)")
  end
end

-- init_worker_by_lua: this worker's router, with every handler folder loaded.
function _M.init_worker()
  serve_options = { answer_first = setting("JICOO_ANSWER_FIRST") == "1" }
  router = openresty.router({
    secrets = secrets(),
    store = claims_store(),
    config = { output_dir = setting("JICOO_OUTPUT_DIR") },
  })
  for _, folder in ipairs(handler_folders()) do
    local count, err = router:load(folder)
    if count then
      ngx.log(ngx.INFO, "jicoo-webhook: ", folder, ": ", count, " handler(s)")
    else
      -- The scripts that loaded still run; the broken ones are named here.
      ngx.log(ngx.ERR, "jicoo-webhook: ", folder, ": ", err)
    end
  end
end

-- content_by_lua: one delivery.
function _M.serve()
  return openresty.serve(router, serve_options)
end

-- content_by_lua: the counts handlers/any.lua keeps, as JSON.
function _M.stats()
  local dict = ngx.shared.jicoo_stats
  local counts = {}
  for _, key in ipairs(dict:get_keys(0)) do
    counts[key] = dict:get(key)
  end
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(counts))
end

return _M
