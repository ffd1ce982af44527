-- The limits (docs/api.md, "Limits"), each at its boundary through parse and through decode: a
-- body exactly at the limit passes, one a unit over is refused with code "limit". Each limit
-- is tried at its documented default (no options) and at a small override.
local webhook = require "jicoo.webhook"
local support = require "support"

local rep, concat = string.rep, table.concat

local fixture = support.read(support.fixtures .. "/valid/strict_guest_booked_full.json")

-- The fixture with one more (unknown, so kept) key at the top level holding the JSON `value`.
local function with_key(value)
  return (fixture:gsub("^%s*{", function()
    return '{"zz_limit": ' .. value .. ","
  end, 1))
end

-- The values in a decoded document, containers included, as the core counts them.
local function count_values(value)
  local n = 1
  if type(value) == "table" then
    for _, item in pairs(value) do
      n = n + count_values(item)
    end
  end
  return n
end

local function zeros(n)
  return rep("0,", n):sub(1, -2)
end

-- An array holding exactly n values in all (itself included), no array over 10000 items.
local function values(n)
  if n - 1 <= 10000 then
    return "[" .. zeros(n - 1) .. "]"
  end
  local parts, left = {}, n - 1
  while left > 0 do
    local items = math.min(left - 1, 10000)
    parts[#parts + 1] = "[" .. zeros(items) .. "]"
    left = left - 1 - items
  end
  return "[" .. concat(parts, ",") .. "]"
end

-- An object of n keys.
local function keys(n)
  local parts = {}
  for i = 1, n do
    parts[i] = '"k' .. i .. '":0'
  end
  return "{" .. concat(parts, ",") .. "}"
end

local fixture_values = count_values(webhook.decode(fixture))

-- Per limit: its README default, a small override the fixture itself stays within, and the
-- bodies that measure exactly n by that limit.
local LIMITS = {
  { name = "max_size", default = 1048576, small = #fixture + 16, cases = {
    { "parse", "the fixture padded with spaces", function(n) return fixture .. rep(" ", n - #fixture) end },
    { "decode", "an array padded with spaces", function(n) return "[1]" .. rep(" ", n - 3) end },
  } },
  { name = "max_depth", default = 32, small = 8, cases = {
    { "parse", "nested arrays in an unknown key", function(n) return with_key(rep("[", n - 1) .. rep("]", n - 1)) end },
    { "decode", "nested arrays", function(n) return rep("[", n) .. rep("]", n) end },
    { "decode", "nested objects", function(n) return rep('{"a":', n - 1) .. "{}" .. rep("}", n - 1) end },
  } },
  -- Keys are also bounded by max_key: these key cases lift it out of the way.
  { name = "max_string", default = 262144, small = 64, cases = {
    { "parse", "a string in an unknown key", function(n) return with_key('"' .. rep("a", n) .. '"') end },
    { "parse", "an unknown key", function(n) return with_key('{"' .. rep("k", n) .. '":0}') end, { max_key = 2^30 } },
    { "decode", "a string", function(n) return '"' .. rep("a", n) .. '"' end },
    { "decode", "a string with escapes, by its decoded length", function(n) return '"' .. rep("\\u00e9", n / 2) .. '"' end },
    { "decode", "a key", function(n) return '{"' .. rep("k", n) .. '":0}' end, { max_key = 2^30 } },
  } },
  -- The longest key the runtime's string hash reads whole: LuaJIT samples from 128 bytes, Lua
  -- 5.1 to 5.3 from 32, Lua 5.4 reads every byte.
  { name = "max_key", default = (rawget(_G, "jit") or _VERSION == "Lua 5.4") and 127 or 31, small = 16, cases = {
    { "parse", "an unknown key", function(n) return with_key('{"' .. rep("k", n) .. '":0}') end },
    { "parse", "an unknown key at the top level", function(n) return with_key('0,"' .. rep("k", n) .. '":0') end },
    { "decode", "a key", function(n) return '{"' .. rep("k", n) .. '":0}' end },
    { "decode", "a key with escapes, by its decoded length", function(n) return '{"' .. rep("\\u00e9", n / 2) .. '":0}' end },
  } },
  { name = "max_keys", default = 1024, small = 20, cases = {
    { "parse", "an object in an unknown key", function(n) return with_key(keys(n)) end },
    { "decode", "an object", keys },
  } },
  { name = "max_items", default = 10000, small = 5, cases = {
    { "parse", "an array in an unknown key", function(n) return with_key("[" .. zeros(n) .. "]") end },
    { "decode", "an array", function(n) return "[" .. zeros(n) .. "]" end },
  } },
  { name = "max_values", default = 100000, small = fixture_values + 10, cases = {
    { "parse", "the fixture and arrays in an unknown key", function(n) return with_key(values(n - fixture_values)) end },
    { "decode", "arrays", values },
  } },
}

local entries = { parse = webhook.parse, decode = webhook.decode }

describe("limits", function()
  it("has the README's defaults", function()
    local readme = {}
    for _, limit in ipairs(LIMITS) do
      readme[limit.name] = limit.default
    end
    assert.are.same(readme, webhook.limits)
  end)

  for _, limit in ipairs(LIMITS) do
    for _, at in ipairs({ limit.default, limit.small }) do
      local how = at ~= limit.default and "set to " .. at or "by default (" .. at .. ")"
      for _, case in ipairs(limit.cases) do
        local entry, what, build = case[1], case[2], case[3]
        local even = what:find("escapes") and 0 or nil -- two bytes per escape: even sizes only
        local limit_at = even and at - at % 2 or at
        local opts = {}
        for name, value in pairs(case[4] or {}) do
          opts[name] = value
        end
        if at ~= limit.default or even then
          opts[limit.name] = limit_at
        end
        if next(opts) == nil then
          opts = nil   -- the defaults, as a caller without options has them
        end
        it(limit.name .. " " .. how .. ": " .. entry .. " of " .. what .. " passes at the limit, not one over", function()
          local run = entries[entry]
          local body = build(limit_at)
          local value, msg = run(body, opts)
          assert.is_truthy(value, msg)
          local over = build(limit_at + (even and 2 or 1))
          local none, over_msg, info = run(over, opts)
          assert.is_nil(none)
          assert.are.equal("limit", info.code, over_msg)
          assert.is_nil(info.path)
          assert.is_truthy(over_msg:find(limit.name, 1, true), over_msg)
          assert.is_true(info.offset >= 0 and info.offset <= #over)
        end)
      end
    end
  end

  -- The schema's own key names are bytes of a key like any other: parse and decode agree.
  for _, case in ipairs({ { "max_string", 4, 1 }, { "max_string", 11, 11 }, { "max_key", 11, 11 }, { "max_string", 12, nil },
      { "max_key", 12, nil } }) do
    local name, at, offset = case[1], case[2], case[3]
    local body = '{"object":{"eventTypeUid":"x"}}'
    it(name .. " = " .. at .. " " .. (offset and "refuses" or "lets through")
        .. " the schema's own keys (object: 6 bytes, eventTypeUid: 12) in parse as in decode", function()
      local _, parse_msg, parse_info = webhook.parse(body, { [name] = at })
      local _, decode_msg, decode_info = webhook.decode(body, { [name] = at })
      if offset then
        assert.are.equal("limit", parse_info.code, parse_msg)
        assert.are.equal("limit", decode_info.code, decode_msg)
        assert.are.equal(offset, parse_info.offset)
        assert.are.equal(offset, decode_info.offset)
        assert.are.equal(decode_msg, parse_msg)
        assert.truthy(parse_msg:find(name, 1, true), parse_msg)
      else
        assert.is_nil(decode_info)
        assert.are.equal("missing", parse_info.code, parse_msg)   -- the walk went on
      end
    end)
  end

  -- Keys of 128 bytes or more that differ only where LuaJIT's string hash does not look all land
  -- in one chain of its string table (the benchmark prints what they cost): refused by default.
  it("refuses by default the long keys that flood a string table", function()
    local parts = {}
    for i = 1, 200 do
      parts[i] = '"' .. rep("a", 90) .. ("%06d"):format(i) .. rep("a", 32) .. '":"x"'
    end
    local body = with_key("{" .. concat(parts, ",") .. "}")
    for _, run in pairs(entries) do
      local none, msg, info = run(body)
      assert.is_nil(none)
      assert.are.equal("limit", info.code, msg)
      assert.truthy(msg:find("max_key", 1, true), msg)
    end
    assert.is_truthy(webhook.parse(body, { max_key = 128 }))
  end)

  it("takes max_depth up to its ceiling of 1000, and refuses more", function()
    local deep = rep("[", 1000) .. rep("]", 1000)
    assert.is_truthy(webhook.decode(deep, { max_depth = 1000 }))
    assert.are.equal("limit", select(3, webhook.decode("[" .. deep .. "]", { max_depth = 1000 })).code)
    assert.has_error(function() webhook.decode("[]", { max_depth = 1001 }) end)
    assert.has_error(function() webhook.parse(fixture, { max_depth = 1001 }) end)
  end)

  it("refuses a limit below 1 or not a whole number as misuse", function()
    for _, limit in ipairs(LIMITS) do
      assert.has_error(function() webhook.decode("[]", { [limit.name] = 0 }) end)
      assert.has_error(function() webhook.decode("[]", { [limit.name] = 1.5 }) end)
      assert.has_error(function() webhook.parse(fixture, { [limit.name] = "8" }) end)
    end
  end)
end)
