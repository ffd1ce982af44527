-- The shared dicts of the `ngx` stand-in (cli/ngx.lua): ngx.shared.NAME for any name, held in
-- this process's memory, with the methods OpenResty's lua_shared_dict has and its answers
-- (true or false, err, forcible; nil, "not found"; flags returned only when not 0). Times are
-- the stand-in's clock, so that a spec moves it and an expired item is gone. No size: nothing
-- is ever evicted (forcible is always false), and capacity, free_space and the list methods
-- (lpush, rpush, lpop, rpop, llen) are not offered.
local type = type
local pairs = pairs
local error = error
local tostring = tostring
local setmetatable = setmetatable
local table_sort = table.sort
local table_concat = table.concat

local _M = {}

local MAX_KEY = 65535
local VALUE_TYPES = { string = true, number = true, boolean = true }

-- The methods offered, named in the message for any other.
_M.METHODS = { "add", "delete", "expire", "flush_all", "flush_expired", "get", "get_keys",
  "get_stale", "incr", "replace", "safe_add", "safe_set", "set", "ttl" }

local Dict = {}

-- The key as nginx stores it, or nil and why.
local function key_of(key)
  if key == nil then
    return nil, "nil key"
  end
  if type(key) ~= "string" then
    key = tostring(key)
  end
  if #key == 0 then
    return nil, "empty key"
  elseif #key > MAX_KEY then
    return nil, "key too long"
  end
  return key
end

local function check_self(self, method)
  if type(self) ~= "table" or self.items == nil then
    error("ngx.shared.DICT." .. method .. ": call it as a method, dict:" .. method .. "(...)", 3)
  end
end

-- The item under key if it has not expired (the expired one as a second value).
local function live(self, key)
  local item = self.items[key]
  if item == nil then
    return nil
  end
  if item.expires ~= 0 and item.expires <= self.clock() then
    return nil, item
  end
  return item
end

local function expiry(self, exptime)
  if exptime == nil or exptime == 0 then
    return 0
  end
  if type(exptime) ~= "number" or exptime < 0 then
    error("bad \"exptime\" argument: a number of seconds, 0 or more", 4)
  end
  return self.clock() + exptime
end

-- set, safe_set, add, safe_add, replace: true, nil, false; or false and why.
local function store(self, method, key, value, exptime, flags, condition)
  check_self(self, method)
  local stored_key, key_err = key_of(key)
  if not stored_key then
    return false, key_err, false
  end
  if value ~= nil and not VALUE_TYPES[type(value)] then
    return false, "bad value type", false
  end
  if flags ~= nil and type(flags) ~= "number" then
    error("bad \"flags\" argument: a number", 3)
  end
  local expires = expiry(self, exptime)
  local current = live(self, stored_key)
  if condition == "absent" and current then
    return false, "exists", false
  elseif condition == "present" and not current then
    return false, "not found", false
  end
  if value == nil then
    self.items[stored_key] = nil
  else
    self.items[stored_key] = { value = value, flags = flags or 0, expires = expires }
  end
  return true, nil, false
end

local function answer(item, stale)
  if item.flags ~= 0 or stale ~= nil then
    return item.value, item.flags ~= 0 and item.flags or nil, stale
  end
  return item.value
end

function Dict:get(key)
  check_self(self, "get")
  local stored_key, err = key_of(key)
  if not stored_key then
    return nil, err
  end
  local item = live(self, stored_key)
  if not item then
    return nil
  end
  return answer(item)
end

-- value, flags, stale: an expired item too, until it is overwritten or flushed.
function Dict:get_stale(key)
  check_self(self, "get_stale")
  local stored_key, err = key_of(key)
  if not stored_key then
    return nil, err
  end
  local item, expired = live(self, stored_key)
  if item then
    return answer(item, false)
  elseif expired then
    return answer(expired, true)
  end
  return nil
end

function Dict:set(key, value, exptime, flags)
  return store(self, "set", key, value, exptime, flags)
end

function Dict:safe_set(key, value, exptime, flags)
  local ok, err = store(self, "safe_set", key, value, exptime, flags)
  return ok, err
end

function Dict:add(key, value, exptime, flags)
  return store(self, "add", key, value, exptime, flags, "absent")
end

function Dict:safe_add(key, value, exptime, flags)
  local ok, err = store(self, "safe_add", key, value, exptime, flags, "absent")
  return ok, err
end

function Dict:replace(key, value, exptime, flags)
  return store(self, "replace", key, value, exptime, flags, "present")
end

function Dict:delete(key)
  return store(self, "delete", key, nil)
end

-- newval, err, forcible: a missing (or expired) key starts at init, expiring after init_ttl.
function Dict:incr(key, value, init, init_ttl)
  check_self(self, "incr")
  local stored_key, err = key_of(key)
  if not stored_key then
    return nil, err
  end
  if type(value) ~= "number" then
    error("bad \"value\" argument: a number", 2)
  end
  if init ~= nil and type(init) ~= "number" then
    error("bad \"init\" argument: a number", 2)
  end
  if init_ttl ~= nil and init == nil then
    error("bad \"init_ttl\" argument: only with init", 2)
  end
  local item = live(self, stored_key)
  if item then
    if type(item.value) ~= "number" then
      return nil, "not a number"
    end
    item.value = item.value + value
    if init ~= nil then
      return item.value, nil, false
    end
    return item.value
  end
  if init == nil then
    return nil, "not found"
  end
  self.items[stored_key] = { value = init + value, flags = 0,
    expires = expiry(self, init_ttl) }
  return init + value, nil, false
end

-- Seconds the key has left (0: it never expires), or nil, "not found".
function Dict:ttl(key)
  check_self(self, "ttl")
  local stored_key, err = key_of(key)
  if not stored_key then
    return nil, err
  end
  local item = live(self, stored_key)
  if not item then
    return nil, "not found"
  end
  if item.expires == 0 then
    return 0
  end
  return item.expires - self.clock()
end

function Dict:expire(key, exptime)
  check_self(self, "expire")
  local stored_key, err = key_of(key)
  if not stored_key then
    return nil, err
  end
  if type(exptime) ~= "number" then
    error("bad \"exptime\" argument: a number of seconds, 0 or more", 2)
  end
  local item = live(self, stored_key)
  if not item then
    return nil, "not found"
  end
  item.expires = expiry(self, exptime)
  return true
end

-- Every item expired (get_stale still sees them until flush_expired).
function Dict:flush_all()
  check_self(self, "flush_all")
  local now = self.clock()
  for _, item in pairs(self.items) do
    item.expires = now
  end
end

-- Removes expired items, at most max_count of them (0 or nil: all); how many it removed.
function Dict:flush_expired(max_count)
  check_self(self, "flush_expired")
  local removed = 0
  for key in pairs(self.items) do
    if max_count and max_count > 0 and removed >= max_count then
      break
    end
    local item, expired = live(self, key)
    if not item and expired then
      self.items[key] = nil
      removed = removed + 1
    end
  end
  return removed
end

-- The keys that have not expired, sorted, at most max_count of them (1024 by default; 0: all).
function Dict:get_keys(max_count)
  check_self(self, "get_keys")
  if max_count == nil then
    max_count = 1024
  end
  local keys = {}
  for key in pairs(self.items) do
    if live(self, key) then
      keys[#keys + 1] = key
    end
  end
  table_sort(keys)
  if max_count > 0 then
    for i = #keys, max_count + 1, -1 do
      keys[i] = nil
    end
  end
  return keys
end

local DictMeta = { __index = function(_, name)
  local method = Dict[name]
  if method == nil then
    error("ngx.shared.DICT:" .. tostring(name) .. " is not available in jicoo-webhook run (its"
      .. " shared dicts offer " .. table_concat(_M.METHODS, ", ") .. ")", 2)
  end
  return method
end, __newindex = function(_, name)
  error("ngx.shared.DICT." .. tostring(name) .. " cannot be set in jicoo-webhook run", 2)
end }

-- An empty dict named name on the clock clock() (seconds).
function _M.new(name, clock)
  return setmetatable({ name = name, items = {}, clock = clock }, DictMeta)
end

-- ngx.shared: a dict for any name, made on first use.
function _M.shared(clock)
  local dicts = {}
  return setmetatable({}, {
    __index = function(_, name)
      local dict = dicts[name]
      if dict == nil and type(name) == "string" then
        dict = _M.new(name, clock)
        dicts[name] = dict
      end
      return dict
    end,
    __newindex = function(_, name)
      error("ngx.shared." .. tostring(name) .. " cannot be set: a shared dict is made on first"
        .. " use", 2)
    end,
  })
end

return _M
