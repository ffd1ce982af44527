-- Claim stores: "has this delivery been claimed already?", the question the memory journal asks
-- (of store.memory() by default, or of the one given as its `claims` or as the router's `store`).
-- Also reachable by their former name, jicoo.webhook.store.
--
-- A claim store is any object with
--   store:add(key, ttl)  -> true (first to claim the key), false (already claimed),
--                           or nil, err (the store failed; the router answers 500)
--   store:delete(key)    -> true, or nil, err (gives a claim back so that a retry runs)
-- `add` must be atomic: of two concurrent `add`s of one key exactly one gets true.
--
-- Three constructors, one file each: memory(opts) (one Lua state), shdict(dict [, opts]) (every
-- worker of one nginx) and redis(opts) (several nginx machines). The last two are loaded only
-- when called, so that plain Lua never needs nginx's modules.
local type = type
local error = error
local tostring = tostring
local require = require
local pcall = pcall
local ipairs = ipairs
local rawget = rawget
local getmetatable = getmetatable
local setmetatable = setmetatable
local string_find = string.find

local _M = {}

_M.DEFAULT_TTL = require("jicoo.webhook.journal").DEFAULT_TTL
_M.DEFAULT_MAX_ENTRIES = 100000

function _M.check_positive(value, what, level)
  if type(value) ~= "number" or value <= 0 or value ~= value then
    error(what .. " must be a positive number, got " .. tostring(value), level + 1)
  end
end

-- The ttl a claim of `key` gets (the store's default when none is given); every store's add
-- raises here on a key that is not a string or a ttl that is not a positive number.
function _M.claim_ttl(self, key, ttl)
  if type(key) ~= "string" then
    error("store:add: key must be a string, got " .. type(key), 3)
  end
  if ttl == nil then
    return self.default_ttl
  end
  _M.check_positive(ttl, "store:add: ttl", 3)
  return ttl
end

function _M.check_key(key)
  if type(key) ~= "string" then
    error("store:delete: key must be a string, got " .. type(key), 3)
  end
end

-- Whether `obj` can serve as a claim store.
function _M.is_store(obj)
  local kind = type(obj)
  if kind ~= "table" and kind ~= "userdata" then
    return false
  end
  return type(obj.add) == "function" and type(obj.delete) == "function"
end

-- Whether obj is one of this library's stores or journals (its metatable's __name says so):
-- those answer a failure with nil, err and raise only on misuse, so they are called as they
-- are. Any other is called through guarded(): a trace LuaJIT starts inside a call made under
-- pcall cannot return through it, so the library's own are kept out of pcall.
function _M.is_ours(obj)
  local mt = getmetatable(obj)
  return type(mt) == "table" and type(rawget(mt, "__name")) == "string"
    and string_find(rawget(mt, "__name"), "^jicoo%.webhook%.") ~= nil
end

-- obj with `methods` called under pcall, a raise becoming nil, err: a user's store or journal
-- that raises counts as one that failed. Other fields (durable) are read through.
function _M.guarded(obj, methods)
  local proxy = setmetatable({}, { __index = obj })
  for _, name in ipairs(methods) do
    proxy[name] = function(_, ...)
      local ok, a, b = pcall(obj[name], obj, ...)
      if not ok then
        return nil, tostring(a)
      end
      return a, b
    end
  end
  return proxy
end

-- The constructors (not tail calls, so that a misuse error points at the caller's line).
function _M.memory(opts)
  local s = require("jicoo.webhook.journal.claims.memory").new(opts)
  return s
end

function _M.shdict(dict, opts)
  local s = require("jicoo.webhook.journal.claims.shdict").new(dict, opts)
  return s
end

function _M.redis(opts)
  local s = require("jicoo.webhook.journal.claims.redis").new(opts)
  return s
end

return _M
