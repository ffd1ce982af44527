-- LuaJIT's parse: the C core walks and checks the delivery into int32 slots (its tape mode,
-- called through the FFI), and Lua code generated from core.schema builds the tables. Table
-- constructors with constant keys are copied from a template and filled without hashing, and
-- the JIT compiles all of it; through the classic C API every key is a call and a hash
-- lookup (README "Performance"). Deliveries outside the fast path (an escaped string, an
-- unknown key, any error, options other than level) go to core.parse, which gives the same
-- result or the same error. Only loaded on LuaJIT (see init.lua).
local ffi = require "ffi"
local core = require "jicoo.webhook.core"

local format = string.format
local concat = table.concat
local ipairs = ipairs
local pairs = pairs
local type = type

local ok_new, new_table = pcall(require, "table.new")
if not ok_new then
  new_table = function()
    return {}
  end
end

-- Slots for one delivery: a Booking with many answers needs about 30 plus 8 per answer; a
-- delivery that needs more goes to core.parse.
local CAPACITY = 8192

local walk_tape = ffi.cast("int (*)(const char *, size_t, int, int32_t *, int32_t)", core.tape)
local slots = ffi.new("int32_t[?]", CAPACITY)
local core_parse = core.parse
local core_parse_signed = core.parse_signed

-- The source of build(T, base): statements that read the slots (layout in src/walk.c) and
-- build the Event, every nested type written out in place, so that one trace covers it.
local function builder_source(schema)
  local lines, count = {}, 0
  local function emit(depth, fmt, ...)
    lines[#lines + 1] = ("  "):rep(depth) .. format(fmt, ...)
  end
  local function fresh(prefix)
    count = count + 1
    return prefix .. count
  end

  local value -- value(field, at, depth): emits its statements, returns the variable's name

  local function object(type_name, block, depth)
    local fields = {}
    for i, field in ipairs(schema[type_name].fields) do
      local at = format("%s + %d", block, 2 * (i - 1))
      fields[i] = format("[%q] = %s", field.name, value(field, at, depth))
    end
    local name = fresh("o")
    emit(depth, "local %s = setmetatable({ %s }, metatables.%s)", name, concat(fields, ", "), type_name)
    return name
  end

  function value(field, at, depth)
    local name = fresh("v")
    if field.kind == "string" then
      if field.required == "always" then
        emit(depth, "local %s = str(base + T[%s], T[%s + 1])", name, at, at)
      else
        emit(depth, "local %s", name)
        emit(depth, "if T[%s + 1] >= 0 then %s = str(base + T[%s], T[%s + 1]) end", at, name, at, at)
      end
      return name
    end
    emit(depth, "local %s", name)
    emit(depth, "if T[%s + 1] >= 0 then", at)
    if field.kind == "object" then
      local block = fresh("b")
      emit(depth + 1, "local %s = T[%s]", block, at)
      emit(depth + 1, "%s = %s", name, object(field.type, block, depth + 1))
    else -- array: a chain of items
      local n, item, i = fresh("n"), fresh("e"), fresh("i")
      emit(depth + 1, "local %s, %s = T[%s + 1], T[%s]", n, item, at, at)
      emit(depth + 1, "%s = new_table(%s, 0)", name, n)
      emit(depth + 1, "for %s = 1, %s do", i, n)
      emit(depth + 2, "%s[%s] = %s", name, i, value(field.items, item, depth + 2))
      emit(depth + 2, "%s = T[%s + 2]", item, item)
      emit(depth + 1, "end")
    end
    emit(depth, "end")
    return name
  end

  emit(0, "local str, setmetatable, new_table, metatables = ...")
  emit(0, "return function(T, base)")
  emit(1, "return %s", object("Event", "0", 1))
  emit(0, "end")
  return concat(lines, "\n")
end

local build = assert(loadstring(builder_source(core.schema), "=jicoo.webhook.tape"))(
  ffi.string, setmetatable, new_table, core.metatables)

local _M = { builder_source = builder_source }

-- The tables of a valid delivery in the fast path, or nil (then core.parse knows more).
function _M.parse_fast(body, strict)
  if walk_tape(body, #body, strict and 1 or 0, slots, CAPACITY) ~= 0 then
    return nil
  end
  return build(slots, ffi.cast("const char *", body))
end
local parse_fast = _M.parse_fast

-- The level opts asks for (false: lenient), or nil when opts holds anything else; `extra`
-- names options that are not the parser's (construct's signature options).
local function fast_level(opts, extra)
  if opts == nil then
    return false
  end
  local strict = false
  for name, v in pairs(opts) do
    if name == "level" and (v == "strict" or v == "lenient") then
      strict = v == "strict"
    elseif not (extra and extra[name]) then
      return nil
    end
  end
  return strict
end

-- webhook.parse, same arguments and results as core.parse.
function _M.parse(body, opts)
  local strict
  if type(body) == "string" then
    strict = fast_level(opts)
  end
  if strict ~= nil then
    local event = parse_fast(body, strict)
    if event then
      return event
    end
  end
  return core_parse(body, opts)
end

local SIGNATURE_OPTIONS = { tolerance = true, now = true }

-- construct's parse, as core.parse_signed.
function _M.parse_signed(body, opts)
  local strict
  if type(body) == "string" then
    strict = fast_level(opts, SIGNATURE_OPTIONS)
  end
  if strict ~= nil then
    local event = parse_fast(body, strict)
    if event then
      return event
    end
  end
  return core_parse_signed(body, opts)
end

return _M
