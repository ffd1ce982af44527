-- LuaJIT's paths into the C core (README "Performance"). parse: through the FFI the core walks
-- and checks the delivery into numbered slots (its tape: src/tape.h) and Lua code generated from
-- core.schema builds the tables: table constructors with constant keys are copied from a
-- template and filled without hashing, where through the classic C API every key is a call and
-- a hash lookup. construct: core.verify, then that parse. Anything else (an invalid or unusual
-- delivery, other options or arguments) goes to the classic functions, which give the same
-- result, the same message or the same error. Only loaded on LuaJIT (payload/init.lua).
--
-- The generated builders can be read (spec/luajit_spec.lua runs luacheck on them):
--   luajit -e 'print(require("jicoo.webhook.payload.tape").source())'
local ffi = require "ffi"
local core = require "jicoo.webhook.core"

local format = string.format
local concat = table.concat
local ceil, max = math.ceil, math.max
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

-- The tape's declarations, the text the core was compiled from; once per Lua state (ffi.cdef
-- refuses to declare a name twice, and this module may be loaded again).
if not pcall(ffi.typeof, "jicoo_tape") then
  ffi.cdef(core.tape.cdef)
end
local C = ffi.C
local tape_parse = ffi.cast("const jicoo_tape *", core.tape.api).parse
local CAPACITY, FULL = C.JICOO_TAPE_CAPACITY, C.JICOO_TAPE_FULL
-- The slot layout (src/tape.h), written into the builders as numbers.
local VALUE, LENGTH, NONE = C.JICOO_TAPE_VALUE, C.JICOO_TAPE_LENGTH, C.JICOO_TAPE_NONE
local ITEM_NEXT, OTHER_VALUE, OTHER_NEXT = C.JICOO_TAPE_ITEM_NEXT, C.JICOO_TAPE_OTHER_VALUE,
  C.JICOO_TAPE_OTHER_NEXT

-- The levels as the tape takes them: each one's index in core.options.level.choices, from 0.
local LEVEL = {}
for i, name in ipairs(core.options.level.choices) do
  LEVEL[name] = i - 1
end
local DEFAULT_LEVEL = LEVEL[core.options.level.default]

-- List items read one by one before the loop takes over.
local UNROLLED = 8

-- The expression for slot `n` after the one `expr` names.
local function slot(expr, n)
  return n == 0 and expr or format("%s + %d", expr, n)
end

-- The source of the builders: for each type a function(T, base, at) that reads its object
-- at slot `at` and returns the table, one table constructor whose values are read in place. A
-- constructor with constant keys copies a template and stores without hashing; reading each
-- value inside it keeps few values live, so the JIT compiles a side trace for every shape of
-- delivery (optional fields there or not). Two families: build_<Type> for deliveries that
-- hold only the schema's keys, and build_<Type>_drift whose tables also get the keys outside
-- their type that the walk kept. Separate functions get separate compiled traces, so neither
-- shape runs through the other's trace exits.
local function builder_source(schema)
  local functions, lists = {}, 0

  -- A function that walks a chain: `step` (lines) reads the link at slot `link`, whose next
  -- link's slot is at `next_slot` after it. Chains are mostly short: their first links are read
  -- without a loop (a loop that runs once or twice stops the JIT's traces), then a loop reads
  -- the rest of a long one.
  local function chain(head, step, next_slot, tail)
    local lines = { head }
    for _ = 1, UNROLLED do
      for _, line in ipairs(step) do
        lines[#lines + 1] = "  " .. line
      end
      lines[#lines + 1] = format("  link = T[%s]", slot("link", next_slot))
      lines[#lines + 1] = format("  if link == %d then return %s end", NONE, tail)
    end
    lines[#lines + 1] = "  repeat"
    for _, line in ipairs(step) do
      lines[#lines + 1] = "    " .. line
    end
    lines[#lines + 1] = format("    link = T[%s]", slot("link", next_slot))
    lines[#lines + 1] = format("  until link == %d", NONE)
    lines[#lines + 1] = "  return " .. tail
    lines[#lines + 1] = "end"
    return concat(lines, "\n")
  end

  -- The expression for the value of `field` in the slots at `at` + n; `always` when it cannot
  -- be absent. Every test is a trace exit the JIT must be ready for, so only a field that may
  -- be absent tests whether it is there.
  local function read(field, at, n, always, suffix)
    local first, second = slot(at, n), slot(at, n + LENGTH)
    local expr
    if field.kind == "string" then
      expr = format("str(base + T[%s], T[%s])", first, second)
    elseif field.kind == "object" then
      expr = format("build_%s%s(T, base, T[%s])", field.type, suffix, first)
    else -- an array: a chain of items, read by a function of its own
      lists = lists + 1
      local name = "list_" .. lists
      functions[#functions + 1] = chain(
        format("local function %s(T, base, link, n)\n  local list, i = new_table(n, 0), 1\n"
          .. "  if n == 0 then return list end", name),
        { format("list[i] = %s", read(field.items, "link", 0, true, suffix)), "i = i + 1" },
        ITEM_NEXT, "list")
      expr = format("%s(T, base, T[%s], T[%s])", name, first, second)
    end
    if always then
      return expr
    end
    return format("T[%s] ~= %d and %s or nil", second, NONE, expr)
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
  -- keys that are not in the type: a string or null each
  functions[1] = chain("local function other_keys(object, T, base, link)", {
    format("object[str(base + T[link], T[%s])] = T[%s] ~= %d", slot("link", LENGTH),
      slot("link", OTHER_VALUE + LENGTH), NONE),
    format("  and str(base + T[%s], T[%s]) or nil", slot("link", OTHER_VALUE),
      slot("link", OTHER_VALUE + LENGTH)),
  }, OTHER_NEXT, "object")
  for _, suffix in ipairs({ "", "_drift" }) do
    for _, type_name in ipairs(order) do
      lines[#lines + 1] = format("local build_%s%s", type_name, suffix)
    end
    for _, type_name in ipairs(order) do
      local fields, values = schema[type_name].fields, {}
      for i, field in ipairs(fields) do
        local always = field.required == "always" and not field.nullable
        values[i] = format("    [%q] = %s,", field.name, read(field, "at", VALUE * (i - 1), always, suffix))
      end
      local body = {
        format("function build_%s%s(T, base, at)", type_name, suffix),
        "  local object = setmetatable({",
        concat(values, "\n"),
        format("  }, metatables.%s)", type_name),
      }
      if suffix == "_drift" then -- the pair after the fields: (first other key, how many)
        body[#body + 1] = format("  if T[%s] > 0 then other_keys(object, T, base, T[%s]) end",
          slot("at", VALUE * #fields + LENGTH), slot("at", VALUE * #fields))
      end
      body[#body + 1] = "  return object\nend"
      functions[#functions + 1] = concat(body, "\n")
    end
  end
  lines[#lines + 1] = concat(functions, "\n")
  lines[#lines + 1] = "return build_Event, build_Event_drift"
  return concat(lines, "\n") .. "\n"
end

local SOURCE = builder_source(core.schema)
local build_schema_keys, build_other_keys = assert(loadstring(SOURCE,
  "=jicoo.webhook.payload.tape builders"))(ffi.string, setmetatable, new_table, core.metatables)

local function new_slots(capacity)
  return ffi.new("double[?]", capacity)
end

-- The slots: one array, taken by the parse that walks into it and given back once its tables
-- are built. A parse that starts while another is building (from a finalizer the collector runs
-- during an allocation, or from a hook) finds none and walks into an array of its own; so does
-- the first parse after a build that raised (no memory, or an error from a finalizer), whose
-- array is then the one kept. Nothing stays taken.
--
-- A big delivery gets a bigger array: one slot for every 8 bytes of it from the start (a
-- delivery needs about one for every 14), and twice as many each time the walk finds them too
-- few, up to 4 a byte (more than any delivery can fill: the densest, an array of empty answers,
-- needs under 4) and at most 2^24. The array kept for the next parse is the biggest one up to
-- KEEP slots (1 MiB), so deliveries up to max_size walk once.
local KEEP, MOST = 2 ^ 17, 2 ^ 24
local MAX_SIZE = core.options.max_size.default   -- the tape walks with the default limits
local spare, spare_capacity = new_slots(CAPACITY), CAPACITY

local _M = {}

-- The tables of a valid delivery on the tape at `level` (an index), or nil (then core.parse
-- knows more).
local function parse_tape(body, level)
  local len = #body
  if len > MAX_SIZE then
    return nil   -- refused by the walk's first check: no array for it
  end
  local slots, capacity = spare, spare_capacity
  spare = nil
  if slots == nil or capacity * 8 < len then
    capacity = max(CAPACITY, ceil(len / 8))
    slots = new_slots(capacity)
  end
  local other_keys = tape_parse(body, len, level, slots, capacity)
  while other_keys == FULL and capacity < 4 * len + 64 and capacity < MOST do
    capacity = capacity * 2
    slots = new_slots(capacity)
    other_keys = tape_parse(body, len, level, slots, capacity)
  end
  local event
  if other_keys >= 0 then
    local base = ffi.cast("const char *", body)
    if other_keys == 0 then
      event = build_schema_keys(slots, base, 0)
    else
      event = build_other_keys(slots, base, 0)
    end
  end
  -- an array and its capacity are given back together, so that they always match
  if capacity <= KEEP then
    spare, spare_capacity = slots, capacity
  else
    local small = new_slots(CAPACITY)
    spare, spare_capacity = small, CAPACITY
  end
  return event
end

-- The tape's answer at the lenient level or, with `strict`, the strict one.
function _M.parse_fast(body, strict)
  return parse_tape(body, strict and LEVEL.strict or LEVEL.lenient)
end

-- The builders' source, as loaded.
function _M.source()
  return SOURCE
end

-- The tape's level for opts (nil, or a table holding at most a known level), or nil when opts
-- holds anything else: core.parse checks it. No loop: a loop stops the trace of the function
-- around it.
local function fast_level(opts)
  if opts == nil then
    return DEFAULT_LEVEL
  elseif type(opts) ~= "table" then
    return nil
  end
  local level = opts.level
  if level == nil then
    return count_keys(opts) == 0 and DEFAULT_LEVEL or nil
  end
  return count_keys(opts) == 1 and LEVEL[level] or nil
end

local core_parse, core_verify, core_construct = core.parse, core.verify, core.construct

-- webhook.parse, same arguments and results as core.parse.
function _M.parse(body, opts)
  if type(body) == "string" then
    local level = fast_level(opts)
    if level then
      local event = parse_tape(body, level)
      if event then
        return event
      end
    end
  end
  return core_parse(body, opts)
end

-- The signature's options as core.options describes them; construct's fast path takes a value
-- in their range and leaves any other to core.construct, which raises.
local TOLERANCE, NOW = core.options.tolerance, core.options.now

local function in_range(option, v)
  return v == nil or (type(v) == "number" and v >= option.min and v <= option.max)
end

-- webhook.construct, same arguments and results as core.construct: core.verify checks and
-- verifies, then the tape parses. It takes opts that hold only the signature's options, or
-- only a level; anything else (and arguments of other types) goes to core.construct, which
-- checks them and raises on misuse, so that the error names the caller's line. These names
-- and ranges only choose the path: a wrong one would cost time, never a different answer.
function _M.construct(body, header, secrets, opts)
  if type(body) ~= "string" or type(header) ~= "string" or type(secrets) ~= "string" or secrets == ""
    or (opts ~= nil and type(opts) ~= "table") then
    return core_construct(body, header, secrets, opts)
  end
  local level, parse_opts, ok, msg, code = DEFAULT_LEVEL, nil
  if opts == nil then
    ok, msg, code = core_verify(body, header, secrets)
  elseif opts.level == nil then
    local tolerance, now = opts.tolerance, opts.now
    if count_keys(opts) ~= (tolerance ~= nil and 1 or 0) + (now ~= nil and 1 or 0)
      or not in_range(TOLERANCE, tolerance) or not in_range(NOW, now) then
      return core_construct(body, header, secrets, opts)
    end
    ok, msg, code = core_verify(body, header, secrets, opts)
  else
    level, parse_opts = count_keys(opts) == 1 and LEVEL[opts.level], opts
    if not level then
      return core_construct(body, header, secrets, opts)
    end
    ok, msg, code = core_verify(body, header, secrets)
  end
  if not ok then
    return nil, msg, { code = code }
  end
  local event = parse_tape(body, level)
  if event then
    return event
  end
  return core_parse(body, parse_opts)
end

return _M
