-- What every answer of the C core must satisfy, whatever the input: loaded once by the fuzz
-- targets (harness.c), one check per target. A check raises when an invariant breaks; the
-- harness then aborts, and libFuzzer keeps the input. `core` and `call_entry` are globals the
-- harness sets: call_entry(name, ...) is core[name](...) through lua_pcall, and raises if the
-- entry itself raised (bad input must return, never raise).
local core = core            -- luacheck: globals core
local call_entry = call_entry -- luacheck: globals call_entry
local tape_accepts = tape_accepts -- luacheck: globals tape_accepts

local floor = math.floor
local math_type = math.type
local format = string.format
local utf8_len = utf8.len

local checks = {}

local PARSE_CODES = {
  syntax = true, encoding = true, limit = true, missing = true, type = true, format = true,
  enum = true, duplicate = true, unknown_key = true,
}
local DECODE_CODES = { syntax = true, encoding = true, limit = true }
local VERIFY_CODES = {
  missing_header = true, malformed_header = true, no_signature = true, mismatch = true,
  expired = true,
}
-- README: info.path is nil for these codes, a JSON Pointer for every other one.
local PATHLESS = { syntax = true, limit = true }
-- Small enough that inputs of a few hundred bytes reach every limit.
local TIGHT = { max_depth = 4, max_string = 16, max_key = 10, max_keys = 8, max_items = 8, max_values = 64 }
local LEVELS = { "lenient", "strict" }
local UNKNOWN_KEYS = { "keep", "drop", "reject" }

local SECRET = "whsec_fuzz"
local NOW = 1700000000

local function check(ok, fmt, ...)
  if not ok then
    error(format(fmt, ...), 0)
  end
end

-- The digit `base` of the variant byte at `place` (a product of the bases before it).
local function digit(variant, place, base)
  return floor(variant / place) % base
end

local function with_limits(opts, tight)
  if tight then
    for name, value in pairs(TIGHT) do
      opts[name] = value
    end
  end
  return opts
end

-- nil, msg, info as the README describes it.
local function check_failure(input, codes, value, msg, info)
  check(value == nil, "a failure's first result is %s, not nil", tostring(value))
  check(type(msg) == "string", "msg is a %s", type(msg))
  check(type(info) == "table", "info is a %s (msg %s)", type(info), msg)
  local code, path, offset = info.code, info.path, info.offset
  check(codes[code], "unknown code %s (msg %s)", tostring(code), msg)
  check(msg:sub(1, #code + 1) == code .. ":", "msg %q does not start with its code %s", msg, code)
  check(not msg:find("[\r\n]"), "msg %q is not one line", msg)
  check(math_type(offset) == "integer", "offset is %s", tostring(offset))
  check(offset >= 0 and offset <= #input, "offset %d outside 0..%d (msg %s)", offset, #input, msg)
  if PATHLESS[code] then
    check(path == nil, "%s has path %s (msg %s)", code, tostring(path), msg)
  else
    check(type(path) == "string", "%s has no path (msg %s)", code, msg)
    check(path == "" or path:sub(1, 1) == "/", "path %q is not a JSON Pointer", path)
    -- the message quotes the path with control bytes (a key may hold them) escaped as \u00XX
    local named = path:gsub("[%z\1-\31\127]", function(c)
      return format("\\u%04X", c:byte())
    end)
    check(msg:find(named, 1, true), "msg %q does not name path %q", msg, path)
  end
end

-- Every string a decode gives, keys included, is valid UTF-8 (Lua's strict decoder agrees).
local function check_utf8(value)
  if type(value) == "string" then
    check(utf8_len(value) ~= nil, "decoded string %q is not valid UTF-8", value)
  elseif type(value) == "table" then
    for k, v in pairs(value) do
      check_utf8(k)
      check_utf8(v)
    end
  end
end

-- A JSON text of a decoded value: floats keep a '.' or exponent so that they stay floats.
local function encode(value, out)
  local t = type(value)
  if value == core.null then
    out[#out + 1] = "null"
  elseif t == "boolean" then
    out[#out + 1] = tostring(value)
  elseif t == "number" then
    if math_type(value) == "integer" then
      out[#out + 1] = format("%d", value)
    else
      local text = format("%.17g", value)
      out[#out + 1] = text:find("^-?%d+$") and text .. ".0" or text
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. value:gsub('[%c"\\]', function(c)
      return format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "table" then
    local first = next(value)
    if first == nil or type(first) == "number" then -- an array: keys 1..n, no holes
      local n = #value
      out[#out + 1] = "["
      for i = 1, n do
        encode(value[i], out)
        out[#out + 1] = i < n and "," or ""
      end
      out[#out + 1] = "]"
      local count = 0
      for k in pairs(value) do
        check(math_type(k) == "integer" and k >= 1 and k <= n, "array key %s outside 1..%d", tostring(k), n)
        count = count + 1
      end
      check(count == n, "array of %d items has %d keys", n, count)
    else
      out[#out + 1] = "{"
      for k, v in pairs(value) do
        check(type(k) == "string", "object key %s is a %s", tostring(k), type(k))
        encode(k, out)
        out[#out + 1] = ":"
        encode(v, out)
        out[#out + 1] = ","
      end
      out[#out] = "}"
    end
  else
    error(format("decode gave a %s", t), 0)
  end
  return out
end

-- Equal as values, numbers of the same subtype.
local function same(a, b, where)
  if type(a) ~= "table" or type(b) ~= "table" then
    check(a == b and math_type(a) == math_type(b), "%s: %s (%s) ~= %s (%s)", where, tostring(a),
          tostring(math_type(a) or type(a)), tostring(b), tostring(math_type(b) or type(b)))
    return
  end
  for k, v in pairs(a) do
    same(v, b[k], where .. "/" .. tostring(k))
  end
  for k in pairs(b) do
    check(a[k] ~= nil, "%s/%s: only on one side", where, tostring(k))
  end
end

-- Each Jicoo type's fields by name, from the schema the core publishes.
local FIELDS = {}
for name, description in pairs(core.schema) do
  local fields = {}
  for _, field in ipairs(description.fields) do
    fields[field.name] = field
  end
  FIELDS["jicoo.webhook." .. name] = fields
end

-- A parse result `p` against the plain decode `d` of the same body: the same data, typed
-- where the schema says, as the options say (nulls, unknown keys, lenient lists).
local function same_as_decoded(p, d, field, opts, where)
  if d == core.null then
    check(p == opts.null, "%s: null became %s", where, tostring(p))
    return
  end
  if not field or field.kind ~= "object" then
    if field and field.kind == "array" then
      if type(d) == "string" and field.string_as_list and opts.level == "lenient" then
        d = { d }
      end
      check(type(p) == "table" and getmetatable(p) == nil, "%s: not a plain list", where)
      check(type(d) == "table", "%s: a list from a %s", where, type(d))
      for i, item in pairs(d) do
        same_as_decoded(p[i], item, field.items, opts, where .. "/" .. (i - 1))
      end
      for i in pairs(p) do
        check(d[i] ~= nil, "%s/%d: an item only the parse has", where, i - 1)
      end
    elseif type(d) == "table" then
      check(type(p) == "table" and getmetatable(p) == nil, "%s: not a plain table", where)
      for k, v in pairs(d) do
        same_as_decoded(p[k], v, nil, opts, where .. "/" .. tostring(k))
      end
      for k in pairs(p) do
        check(d[k] ~= nil, "%s/%s: a key only the parse has", where, tostring(k))
      end
    else
      check(field == nil or field.kind == "string", "%s: a %s for a %s", where, type(d), field and field.kind)
      same(p, d, where)
    end
    return
  end
  local name = "jicoo.webhook." .. field.type
  local mt = getmetatable(p)
  check(type(p) == "table" and mt and mt.__name == name, "%s: not a %s", where, name)
  local fields = FIELDS[name]
  for k, v in pairs(d) do
    local known = fields[k]
    if known or opts.unknown_keys == "keep" then
      same_as_decoded(p[k], v, known, opts, where .. "/" .. k)
    else
      check(opts.unknown_keys == "drop", "%s/%s: parse accepted an unknown key with reject", where, k)
      check(p[k] == nil, "%s/%s: a dropped key is there", where, k)
    end
  end
  for k in pairs(p) do
    check(d[k] ~= nil, "%s/%s: a key only the parse has", where, tostring(k))
  end
end

local EVENT_FIELD = { kind = "object", type = "Event" }

-- The tape mode (LuaJIT's parse) takes only what the Lua walk accepts at the same level.
local function check_tape(body, level, small)
  if tape_accepts(body, level == "strict", small and 40 or 8192) then
    local ev, msg = call_entry("parse", body, { level = level })
    check(ev ~= nil, "the tape mode accepts what parse refuses: %s", tostring(msg))
  end
end

-- checks.parse: variant = level (2) x unknown_keys (3) x null (2) x limits (2), and a small
-- or a large tape (2).
function checks.parse(body, variant)
  local opts = with_limits({
    level = LEVELS[digit(variant, 1, 2) + 1],
    unknown_keys = UNKNOWN_KEYS[digit(variant, 2, 3) + 1],
    null = digit(variant, 6, 2) == 1 and core.null or nil,
  }, digit(variant, 12, 2) == 1)
  check_tape(body, opts.level, digit(variant, 24, 2) == 1)
  local ev, msg, info = call_entry("parse", body, opts)
  local decode_opts = with_limits({}, digit(variant, 12, 2) == 1)
  local plain, _, plain_info = call_entry("decode", body, decode_opts)
  if ev == nil then
    check_failure(body, PARSE_CODES, ev, msg, info)
    if plain ~= nil then -- well-formed and within the limits: only the schema can refuse it
      check(not DECODE_CODES[info.code], "decode accepts what parse calls %s", msg)
    else                 -- parse reads the same bytes, so it stops there or sooner
      check(info.offset <= plain_info.offset, "parse stops at %d (%s), decode at %d", info.offset,
            msg, plain_info.offset)
    end
    return
  end
  check(msg == nil and info == nil, "a success with a message")
  check(plain ~= nil, "parse accepts what decode refuses")
  same_as_decoded(ev, plain, EVENT_FIELD, opts, "")
end

-- utf8_repair against Lua 5.4's own strict decoder: what it returns is valid, and it changes s
-- exactly when s is not.
local function check_repair(s)
  local repaired = call_entry("utf8_repair", s)
  check(utf8_len(repaired) ~= nil, "utf8_repair(%q) gives %q, not valid UTF-8", s, repaired)
  check((repaired == s) == (utf8_len(s) ~= nil), "utf8_repair(%q) gives %q", s, repaired)
end

-- checks.decode: variant = null (2) x limits (2).
function checks.decode(s, variant)
  check_repair(s)
  local null_false, tight = digit(variant, 1, 2) == 1, digit(variant, 2, 2) == 1
  local opts = with_limits({ null = null_false and false or nil }, tight)
  local value, msg, info = call_entry("decode", s, opts)
  if value == nil and msg ~= nil then
    check_failure(s, DECODE_CODES, value, msg, info)
    return
  end
  check(msg == nil and info == nil, "a success with a message")
  check_utf8(value)
  -- what decode gives, written back as JSON, decodes to the same value
  local text = table.concat(encode(value, {}))
  local again, again_msg = call_entry("decode", text, { null = opts.null, max_size = 2147483647 })
  check(again ~= nil or again_msg == nil, "its own re-encoding %q fails: %s", text, tostring(again_msg))
  same(again, value, "round trip")
  if tight then -- the tight limits only take away
    same((call_entry("decode", s, { null = opts.null })), value, "default limits")
  end
end

-- The t values a header may carry, as written (the MAC covers the text, not the number).
local function times(header)
  local list = {}
  for t in header:gmatch("t[ \t]*=[ \t]*(%d+)") do
    list[#list + 1] = t
  end
  return list
end

local function hex(bytes)
  return (bytes:gsub(".", function(c)
    return format("%02x", c:byte())
  end))
end

-- The header as a list of field values (a header sent more than once), split at its commas.
local function as_list(header)
  local list = {}
  for value in (header .. ","):gmatch("([^,]*),") do
    list[#list + 1] = value
  end
  return list
end

-- checks.verify: input = header, newline, body ("SIG" in the header stands for the right v1);
-- variant = secrets (2) x tolerance (2) x header as one string or as a list (2).
function checks.verify(input, variant)
  local header, body = input:match("^([^\n]*)\n(.*)$")
  if not header then
    body = input
  else
    local t = times(header)[1] or tostring(NOW)
    header = header:gsub("SIG", hex(core.hmac_sha256(SECRET, t .. "." .. body)))
  end
  local secrets = digit(variant, 1, 2) == 1 and { "whsec_other", SECRET } or SECRET
  local opts = { tolerance = digit(variant, 2, 2) == 1 and 0 or 300, now = NOW }
  local ok, msg, code = call_entry("verify", body, header, secrets, opts)
  if ok ~= true then
    check(ok == false, "verify gave %s", tostring(ok))
    check(VERIFY_CODES[code], "unknown code %s (msg %s)", tostring(code), tostring(msg))
    check(type(msg) == "string" and msg:sub(1, #code + 1) == code .. ":", "msg %s for code %s",
          tostring(msg), code)
  else
    check(msg == nil and code == nil, "a success with a message")
    -- no forgery: the header holds the MAC of one of its t values under one of the secrets
    local lower, found = header:lower(), false
    for _, t in ipairs(times(header)) do
      for _, secret in ipairs(type(secrets) == "table" and secrets or { secrets }) do
        found = found or lower:find(hex(core.hmac_sha256(secret, t .. "." .. body)), 1, true) ~= nil
      end
    end
    check(found, "verify accepted %q without the body's MAC", header)
  end
  if header and digit(variant, 4, 2) == 1 then -- a list reads as its values joined with ","
    local list_ok, list_msg, list_code = call_entry("verify", body, as_list(header), secrets, opts)
    check(list_ok == ok and list_msg == msg and list_code == code, "as a list: %s, %s", tostring(list_ok),
          tostring(list_msg))
  end
  -- what sign writes, verify accepts
  local signed = call_entry("sign", SECRET, body, NOW)
  check(call_entry("verify", body, signed, secrets, opts) == true, "sign/verify round trip fails")
end

return checks
