-- LuaJIT's paths into the C core, through the FFI, which the JIT compiles (README
-- "Performance"). parse: the core walks and checks the delivery into numbered slots (its tape
-- mode) and Lua code generated from core.schema builds the tables: table constructors with
-- constant keys are copied from a template and filled without hashing, where through the
-- classic C API every key is a call and a hash lookup. verify and construct: one call for one
-- header and one secret. Anything outside these paths (an invalid or unusual delivery, a
-- failed signature, other options or arguments) goes to the classic functions, which give
-- the same result, the same message or the same error. Only loaded on LuaJIT (see init.lua).
local ffi = require "ffi"
local core = require "jicoo.webhook.core"

local format = string.format
local concat = table.concat
local ipairs = ipairs
local pairs = pairs
local type = type

-- OpenResty's LuaJIT has both, compiled by the JIT; the fallbacks are for another LuaJIT.
local ok_new, new_table = pcall(require, "table.new")
if not ok_new then
  new_table = function()
    return {}
  end
end
local ok_nkeys, count_keys = pcall(require, "table.nkeys")
if not ok_nkeys then
  count_keys = function(t)
    local n = 0
    for _ in pairs(t) do
      n = n + 1
    end
    return n
  end
end

-- Slots for one delivery: about 60, plus 12 for each answer and 3 for each line of an answer's
-- content; a delivery that needs more goes to core.parse.
local CAPACITY = 8192

-- List items read one by one before the loop takes over.
local UNROLLED = 8

local walk_tape = ffi.cast("int (*)(const char *, size_t, int, double *, int32_t)", core.tape)
local walk_tape_signed = ffi.cast("int (*)(void *, const char *, size_t, const char *, size_t,"
  .. " const char *, size_t, double, double, int, double *, int32_t)", core.tape_signed)
local check_signature = ffi.cast("int (*)(void *, const char *, size_t, const char *, size_t,"
  .. " const char *, size_t, double, double)", core.signature_check)
local hmac_template = ffi.cast("void *", core.hmac_template)
local core_verify = core.verify
local core_construct = core.construct
local slots = ffi.new("double[?]", CAPACITY)
local core_parse = core.parse

-- The source of the builders: for each type a function(T, base, at) that reads its object
-- at slot `at` (layout in src/walk.c) and returns the table, one table constructor whose
-- values are read in place. A constructor with constant keys copies a template and stores
-- without hashing; reading each value inside it keeps few values live, so the JIT compiles
-- a side trace for every shape of delivery (optional fields there or not). With other_keys,
-- each table also gets the keys outside its type that the walk kept.
local function builder_source(schema, other_keys)
  local functions, lists = {}, 0

  -- The lines of a function that walks a chain: `step` (lines) reads the link at slot `link`,
  -- `next_slot` is where the next link's slot is. Chains are mostly short: their first links
  -- are read without a loop (a loop that runs once or twice stops the JIT's traces), then a
  -- loop reads the rest of a long one.
  local function chain(head, step, next_slot, tail)
    local lines = { head }
    for _ = 1, UNROLLED do
      for _, line in ipairs(step) do
        lines[#lines + 1] = "  " .. line
      end
      lines[#lines + 1] = format("  link = T[%s]", next_slot)
      lines[#lines + 1] = "  if link < 0 then return " .. tail .. " end"
    end
    lines[#lines + 1] = "  repeat"
    for _, line in ipairs(step) do
      lines[#lines + 1] = "    " .. line
    end
    lines[#lines + 1] = format("    link = T[%s]", next_slot)
    lines[#lines + 1] = "  until link < 0"
    lines[#lines + 1] = "  return " .. tail
    lines[#lines + 1] = "end"
    return concat(lines, "\n")
  end

  -- The expression for the value of `field` in slots `at`, `at + 1`; `always` when it cannot
  -- be absent. Every test is a trace exit the JIT must be ready for, so only a field that may
  -- be absent tests whether it is there.
  local function read(field, at, always)
    local expr
    if field.kind == "string" then
      expr = format("str(base + T[%s], T[%s + 1])", at, at)
    elseif field.kind == "object" then
      expr = format("build_%s(T, base, T[%s])", field.type, at)
    else -- an array: a chain of items, read by a function of its own
      lists = lists + 1
      local name = "list_" .. lists
      functions[#functions + 1] = chain(
        format("local function %s(T, base, link, n)\n  local list, i = new_table(n, 0), 1\n"
          .. "  if n == 0 then return list end", name),
        { format("list[i] = %s", read(field.items, "link", true)), "i = i + 1" }, "link + 2", "list")
      expr = format("%s(T, base, T[%s], T[%s + 1])", name, at, at)
    end
    if always then
      return expr
    end
    return format("T[%s + 1] >= 0 and %s or nil", at, expr)
  end

  -- Nested types first, so that each builder can call the ones it needs.
  local order, seen = {}, {}
  local function visit(type_name)
    if seen[type_name] then
      return
    end
    seen[type_name] = true
    for _, field in ipairs(schema[type_name].fields) do
      local nested = field.type or (field.items and field.items.type)
      if nested then
        visit(nested)
      end
    end
    order[#order + 1] = type_name
  end
  visit("Event")

  local lines = { "local str, setmetatable, new_table, metatables = ..." }
  if other_keys then -- keys that are not in the type: a string or null each
    lines[2] = chain("local function other_keys(object, T, base, link)",
      { "object[str(base + T[link], T[link + 1])] = T[link + 3] >= 0"
        .. " and str(base + T[link + 2], T[link + 3]) or nil" }, "link + 4", "object")
  end
  for _, type_name in ipairs(order) do
    lines[#lines + 1] = format("local build_%s", type_name)
  end
  for _, type_name in ipairs(order) do
    local fields, values = schema[type_name].fields, {}
    for i, field in ipairs(fields) do
      local always = field.required == "always" and not field.nullable
      values[i] = format("    [%q] = %s,", field.name, read(field, format("at + %d", 2 * (i - 1)), always))
    end
    functions[#functions + 1] = concat({
      format("function build_%s(T, base, at)", type_name),
      "  local object = setmetatable({",
      concat(values, "\n"),
      format("  }, metatables.%s)", type_name),
      other_keys and format("  if T[at + %d] > 0 then other_keys(object, T, base, T[at + %d]) end",
        2 * #fields + 1, 2 * #fields) or "",
      "  return object",
      "end",
    }, "\n")
  end
  lines[#lines + 1] = concat(functions, "\n")
  lines[#lines + 1] = "return build_Event"
  return concat(lines, "\n")
end

-- Two builders: one for deliveries that hold only the schema's keys, one that also keeps the
-- others (schema drift). Separate functions get separate compiled traces, so neither shape
-- runs through the other's trace exits.
local function new_builder(other_keys)
  local name = other_keys and "=jicoo.webhook.luajit (other keys)" or "=jicoo.webhook.luajit"
  return assert(loadstring(builder_source(core.schema, other_keys), name))(
    ffi.string, setmetatable, new_table, core.metatables)
end
local build_schema_keys, build_other_keys = new_builder(false), new_builder(true)

-- The slots are one array per Lua state. A parse that starts while another is building (from
-- a finalizer the collector runs during an allocation) takes the classic path instead; an
-- error out of a build (no memory) leaves every later parse on it, slower but still right.
local building = false

-- The Event in the slots after a walk that kept `other_keys` keys outside the schema.
local function build(body, other_keys)
  local base = ffi.cast("const char *", body)
  local event
  if other_keys == 0 then
    event = build_schema_keys(slots, base, 0)
  else
    event = build_other_keys(slots, base, 0)
  end
  building = false
  return event
end

local _M = {}

-- The tables of a valid delivery in the fast path, or nil (then core.parse knows more).
function _M.parse_fast(body, strict)
  if building then
    return nil
  end
  building = true
  local other_keys = walk_tape(body, #body, strict and 1 or 0, slots, CAPACITY)
  if other_keys < 0 then
    building = false
    return nil
  end
  return build(body, other_keys)
end
local parse_fast = _M.parse_fast

-- The level opts asks for (false: lenient), or nil when opts holds anything else; with
-- `signed`, construct's signature options may be there too. No loop: a loop stops the trace
-- of the function around it.
local function fast_level(opts, signed)
  if opts == nil then
    return false
  end
  local level, known = opts.level, 0
  if level ~= nil then
    if level ~= "strict" and level ~= "lenient" then
      return nil
    end
    known = 1
  end
  if signed then
    known = known + (opts.tolerance ~= nil and 1 or 0) + (opts.now ~= nil and 1 or 0)
  end
  if count_keys(opts) ~= known then
    return nil
  end
  return level == "strict"
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

local NAN, HUGE = 0 / 0, math.huge

-- verify's tolerance and now from opts as signature_check takes them (-1: the default, NaN:
-- the clock), or nil when they are not numbers it can take or, with `alone`, when opts holds
-- anything else.
local function signature_times(opts, alone)
  if opts == nil then
    return -1, NAN
  end
  local tolerance, now = opts.tolerance, opts.now
  if alone and count_keys(opts) ~= (tolerance ~= nil and 1 or 0) + (now ~= nil and 1 or 0) then
    return nil
  end
  if tolerance == nil then
    tolerance = -1
  elseif type(tolerance) ~= "number" or tolerance ~= tolerance or tolerance < 0 then
    return nil
  end
  if now == nil then
    now = NAN
  elseif type(now) ~= "number" or now ~= now or now == HUGE or now == -HUGE then
    return nil
  end
  return tolerance, now
end

-- webhook.verify, same arguments and results as core.verify.
function _M.verify(body, header, secret, opts)
  if type(body) == "string" and type(header) == "string" and type(secret) == "string" and secret ~= "" then
    local tolerance, now = signature_times(opts, true)
    if tolerance and check_signature(hmac_template, body, #body, header, #header, secret, #secret, now,
      tolerance) == 1 then
      return true
    end
  end
  return core_verify(body, header, secret, opts)
end

-- webhook.construct, same arguments and results as core.construct: verify and parse in one
-- C call for one header and one secret; anything else, and every failure, from core.construct.
function _M.construct(body, header, secret, opts)
  if type(body) == "string" and type(header) == "string" and type(secret) == "string" and secret ~= "" then
    local strict = fast_level(opts, true)
    local tolerance, now = signature_times(opts)
    if strict ~= nil and tolerance ~= nil and not building then
      building = true
      local other_keys = walk_tape_signed(hmac_template, body, #body, header, #header, secret,
        #secret, now, tolerance, strict and 1 or 0, slots, CAPACITY)
      if other_keys >= 0 then
        return build(body, other_keys)
      end
      building = false
    end
  end
  return core_construct(body, header, secret, opts)
end

return _M
