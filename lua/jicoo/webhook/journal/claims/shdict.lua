-- The claim store of one nginx, shared by every worker: ngx.shared.DICT's add and delete. `add`
-- is atomic across workers (the dict's lock), and survives `nginx -s reload` (not a restart). A
-- full dict evicts its least recently used claims to make room, as store.memory evicts its
-- oldest.
local setmetatable = setmetatable
local type = type
local error = error
local tostring = tostring
local rawget = rawget

local options = require "jicoo.webhook.options"
local store = require "jicoo.webhook.journal.claims"

local _M = {}

local Shdict = {}
Shdict.__index = Shdict
Shdict.__name = "jicoo.webhook.journal.claims.shdict"   -- store.is_ours: it returns, never raises, on failure

local function ngx_shared()
  local ngx = rawget(_G, "ngx")
  return ngx and ngx.shared
end

local OPTIONS = options.schema("store.shdict", {
  { "ttl", "number", default = store.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
  { "prefix", "string", default = "" },
})

function _M.new(dict, opts)
  local o = OPTIONS:check(opts, 3)
  local name = dict
  if type(dict) == "string" then
    local shared = ngx_shared()
    if not shared then
      error("store.shdict: ngx.shared is not available (run this inside OpenResty)", 3)
    end
    dict = shared[name]
    if dict == nil then
      error("store.shdict: no lua_shared_dict named '" .. name .. "' in nginx.conf", 3)
    end
  else
    name = "(dict)"
  end
  local kind = type(dict)
  if (kind ~= "table" and kind ~= "userdata") or dict.add == nil or dict.delete == nil then
    error("store.shdict: dict must be an ngx.shared.DICT or its name, got " .. kind, 3)
  end
  return setmetatable({
    dict = dict,
    name = name,
    prefix = o.prefix,
    default_ttl = o.ttl,
  }, Shdict)
end

function Shdict:add(key, ttl)
  ttl = store.claim_ttl(self, key, ttl)
  local ok, err = self.dict:add(self.prefix .. key, true, ttl)
  if ok then
    return true
  end
  if err == "exists" then
    return false
  end
  return nil, "shdict " .. self.name .. ": " .. tostring(err)
end

function Shdict:delete(key)
  store.check_key(key)
  self.dict:delete(self.prefix .. key)
  return true
end

return _M
