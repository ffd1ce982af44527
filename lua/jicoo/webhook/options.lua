-- One way to take options: the Lua twin of the core's option table (src/core_options.c). A
-- constructor declares each of its options once, its name, kind, default and check, and
-- schema:check(opts) gives back a copy with the defaults filled in, or raises at the caller's
-- caller with the core's message shapes:
--
--   "journal.sqlite: unknown option 'dri' (it takes dir, ttl, ...)"
--   "journal.sqlite: option 'ttl' must be a positive number of seconds, got -1"
--
--   local SCHEMA = options.schema("journal.sqlite", {
--     { "dir", "string", required = true },
--     { "ttl", "number", default = 3 * 24 * 3600, check = options.positive, what = "..." },
--   })
--   local o = SCHEMA:check(opts, 2)     -- level: as error() takes it, from check's caller
--
-- Kinds: "string", "number", "boolean", "table", "callable" (a function, or a table or userdata
-- whose metatable has __call), "any". `check(value) -> ok` says more than the kind; `what`
-- names what the option must be, in the messages.
local type = type
local pairs = pairs
local ipairs = ipairs
local error = error
local tostring = tostring
local getmetatable = getmetatable
local setmetatable = setmetatable
local string_format = string.format
local table_concat = table.concat
local math_huge = math.huge
local math_floor = math.floor

local _M = {}

local Schema = {}
Schema.__index = Schema

function _M.is_callable(value)
  if type(value) == "function" then
    return true
  end
  local mt = getmetatable(value)
  return type(mt) == "table" and type(mt.__call) == "function"
end

local KIND_WHAT = {
  string = "a string", number = "a number", boolean = "a boolean", table = "a table",
  callable = "a function", any = "a value",
}

local function has_kind(value, kind)
  if kind == "any" then
    return true
  elseif kind == "callable" then
    return _M.is_callable(value)
  end
  return type(value) == kind
end

-- Checks the common ones: a positive finite number, a number 0 or more, a whole number.
function _M.positive(v)
  return v > 0 and v < math_huge
end

function _M.not_negative(v)
  return v >= 0 and v < math_huge
end

function _M.whole(v)
  return v >= 0 and v == math_floor(v) and v < math_huge
end

-- A check that the value is one of these strings.
function _M.one_of(...)
  local set = {}
  for _, v in ipairs({ ... }) do
    set[v] = true
  end
  return function(v)
    return set[v] == true
  end
end

-- who: the constructor's name in messages; list: { { name, kind, default =, check =, what =,
-- required = }, ... }.
function _M.schema(who, list)
  local by_name, names = {}, {}
  for i, spec in ipairs(list) do
    local option = { name = spec[1], kind = spec[2], default = spec.default, check = spec.check,
      what = spec.what, required = spec.required }
    by_name[option.name] = option
    names[i] = option.name
  end
  return setmetatable({ who = who, options = by_name, names = names,
    takes = table_concat(names, ", ") }, Schema)
end

local function describe(value)
  if type(value) == "string" then
    return string_format("%q", value)
  elseif type(value) == "number" or type(value) == "boolean" then
    return tostring(value)
  end
  return type(value)
end

-- A copy of opts (nil: none) with the defaults filled in; raises, `level` above check's
-- caller, on a name the schema does not have, a value of another kind, a check that fails or a
-- required option that is missing. Names of `allow` (a set) pass through unchecked (another
-- schema's, such as a client's options beside a journal's). `who` names the caller in the
-- messages, when it is not the schema's own (the Redis client's options given to a journal).
function Schema:check(opts, level, allow, who)
  level = (level or 1) + 1
  if who then
    self = setmetatable({ who = who }, { __index = self })
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(self.who .. ": opts must be a table, got " .. type(opts), level)
  end
  local checked = {}
  for name, value in pairs(opts or {}) do
    local option = self.options[name]
    if option then
      if not has_kind(value, option.kind) or (option.check and not option.check(value)) then
        error(self.who .. ": option '" .. name .. "' must be " .. (option.what
          or KIND_WHAT[option.kind]) .. ", got " .. describe(value), level)
      end
      checked[name] = value
    elseif not (allow and allow[name]) then
      error(self.who .. ": unknown option '" .. tostring(name) .. "' (it takes " .. self.takes
        .. ")", level)
    end
  end
  for _, name in ipairs(self.names) do
    local option = self.options[name]
    if checked[name] == nil then
      if option.required then
        error(self.who .. ": option '" .. name .. "' is required (" .. (option.what
          or KIND_WHAT[option.kind]) .. ")", level)
      end
      checked[name] = option.default
    end
  end
  return checked
end

-- The set of this schema's names (to pass on as another schema's `allow`).
function Schema:name_set()
  local set = {}
  for _, name in ipairs(self.names) do
    set[name] = true
  end
  return set
end

return _M
