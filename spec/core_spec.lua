-- jicoo.webhook.core's own tables and helpers: core.options (every option of every call, as the
-- C core defines it), core.check_options (an options table judged without parsing anything)
-- and core.utf8_repair (the strict UTF-8 rule json.c holds strings to).
local core = require "jicoo.webhook.core"
local support = require "support"

local BODY = support.read(support.fixtures .. "/valid/guest_cancelled.json")
local T = 1662520836
local HEADER = core.sign("secret", BODY, T)
local CALLS = { "decode", "parse", "verify", "construct" }

-- Each call made with opts, as a caller makes it (only opts can raise), under pcall: an error
-- raised in C names the line of the Lua function that called it, and here that is pcall's.
local function call_with(call, opts)
  if call == "decode" then
    return pcall(core.decode, "{}", opts)
  elseif call == "parse" then
    return pcall(core.parse, BODY, opts)
  elseif call == "verify" then
    return pcall(core.verify, BODY, HEADER, "secret", opts)
  end
  return pcall(core.construct, BODY, HEADER, "secret", opts)
end

-- A value the option takes, and values it refuses.
local function good_value(option)
  if option.kind == "limit" then
    return option.ceiling
  elseif option.kind == "choice" then
    return option.choices[#option.choices]
  elseif option.kind == "number" then
    return option.min > -1 / 0 and option.min or 0
  end
  return core.null
end

local function bad_values(option)
  if option.kind == "limit" then
    return { 0, option.ceiling + 1, 1.5, -1, "5", true, 0 / 0 }
  elseif option.kind == "choice" then
    return { "nope", option.choices[1]:upper(), 1, true }
  elseif option.kind == "number" then
    local values = { "x", 0 / 0, true }
    if option.min - 1 < option.min then
      values[#values + 1] = option.min - 1
    end
    if option.max < 1 / 0 then
      values[#values + 1] = 1 / 0
    end
    if option.min < -1e308 then
      values[#values + 1] = -1 / 0
    end
    return values
  end
  return {}
end

describe("core.options", function()
  it("describes every option: its kind, the calls that take it, and its values", function()
    local expected = {
      max_size = { "limit", { decode = true, parse = true, construct = true } },
      max_depth = { "limit", { decode = true, parse = true, construct = true } },
      max_string = { "limit", { decode = true, parse = true, construct = true } },
      max_key = { "limit", { decode = true, parse = true, construct = true } },
      max_keys = { "limit", { decode = true, parse = true, construct = true } },
      max_items = { "limit", { decode = true, parse = true, construct = true } },
      max_values = { "limit", { decode = true, parse = true, construct = true } },
      null = { "any", { decode = true, parse = true, construct = true } },
      level = { "choice", { parse = true, construct = true } },
      unknown_keys = { "choice", { parse = true, construct = true } },
      tolerance = { "number", { verify = true, construct = true } },
      now = { "number", { verify = true, construct = true } },
    }
    local names = {}
    for name, option in pairs(core.options) do
      names[#names + 1] = name
      assert(expected[name], "an option the spec does not know: " .. name)
      assert.are.equal(expected[name][1], option.kind, name)
      assert.are.same(expected[name][2], option.calls, name)
    end
    assert.are.equal(12, #names)
    assert.are.same({ "lenient", "strict" }, core.options.level.choices)
    assert.are.equal("lenient", core.options.level.default)
    assert.are.same({ "keep", "drop", "reject" }, core.options.unknown_keys.choices)
    assert.are.equal("keep", core.options.unknown_keys.default)
    assert.are.same({ kind = "number", calls = { verify = true, construct = true }, default = 300,
      min = 0, max = 1 / 0 }, core.options.tolerance)
    assert.is_nil(core.options.now.default) -- the system clock
    assert.is_true(core.options.now.min < -1e308 and core.options.now.max > 1e308)
    assert.are.equal(1000, core.options.max_depth.ceiling)
    assert.are.equal(2147483647, core.options.max_size.ceiling)
  end)

  it("gives each limit the default core.limits lists, and core.limits nothing else", function()
    local limits = {}
    for name, option in pairs(core.options) do
      if option.kind == "limit" then
        limits[name] = option.default
      end
    end
    assert.are.same(limits, core.limits)
    assert.are.equal(1048576, core.limits.max_size)
    assert.are.equal(rawget(_G, "jit") and 127 or (_VERSION == "Lua 5.4" and 127 or 31), core.limits.max_key)
  end)

  it("is what the calls themselves take and refuse", function()
    for name, option in pairs(core.options) do
      for _, call in ipairs(CALLS) do
        local ok, err = call_with(call, { [name] = good_value(option) })
        if option.calls[call] then
          assert(ok, call .. " refuses " .. name .. ": " .. tostring(err))
          for _, bad in ipairs(bad_values(option)) do
            local refused, msg = call_with(call, { [name] = bad })
            assert(not refused, call .. " takes " .. name .. " = " .. tostring(bad))
            assert.matches("^option '" .. name .. "' must be ", msg)
          end
        else
          assert.is_false(ok, call .. " takes " .. name)
          assert.matches("^" .. call .. ": unknown option '" .. name .. "' %(it takes ", err)
        end
      end
    end
  end)
end)

describe("core.check_options", function()
  local cases = {
    {}, { level = "strict" }, { level = "loose" }, { unknown_keys = "drop", null = false },
    { max_size = 10 }, { max_size = 0 }, { max_depth = 1000 }, { max_depth = 1001 }, { max_key = 1.5 },
    { tolerance = 0 }, { tolerance = -1 }, { tolerance = "300" }, { now = T }, { now = 1 / 0 },
    { now = 0 / 0 }, { level = "strict", tolerance = 10, now = T }, { bogus = 1 }, { [1] = true },
    { [true] = 1 }, { null = core.null, max_values = 2 },
  }

  it("raises what each call raises on the same options, and is true where the call takes them", function()
    for _, call in ipairs(CALLS) do
      for i, opts in ipairs(cases) do
        local ok_call, err_call = call_with(call, opts)
        local ok_check, err_check = pcall(core.check_options, call, opts)
        assert.are.equal(ok_call, ok_check, call .. " case " .. i)
        if ok_check then
          assert.is_true(core.check_options(call, opts))
        else
          assert.are.equal(err_call, err_check, call .. " case " .. i)
        end
      end
      assert.is_true(core.check_options(call, nil))
      assert.is_true(core.check_options(call))
      assert.has_error(function() core.check_options(call, 5) end)
    end
  end)

  it("raises on a call it does not know", function()
    assert.has_error(function() core.check_options("sign", {}) end)
    assert.has_error(function() core.check_options(nil, {}) end)
  end)
end)

describe("core.utf8_repair", function()
  local R = "\239\191\189" -- U+FFFD
  local cases = {
    -- valid: returned as they are
    { "", "" }, { "plain ASCII", "plain ASCII" }, { "\0\1\31\127", "\0\1\31\127" },
    { "\194\128", "\194\128" },                 -- U+0080, the first two-byte sequence
    { "\223\191", "\223\191" },                 -- U+07FF, the last
    { "\224\160\128", "\224\160\128" },         -- U+0800, the first three-byte sequence
    { "\237\159\191", "\237\159\191" },         -- U+D7FF, just below the surrogates
    { "\238\128\128", "\238\128\128" },         -- U+E000, just above them
    { "\239\191\191", "\239\191\191" },         -- U+FFFF
    { "\240\144\128\128", "\240\144\128\128" }, -- U+10000, the first four-byte sequence
    { "\244\143\191\191", "\244\143\191\191" }, -- U+10FFFF, the last code point
    { "日本語 café 😀", "日本語 café 😀" },
    -- every byte of a sequence that is not valid is replaced, one U+FFFD each
    { "\128", R }, { "\191", R }, { "\192\128", R .. R }, { "\193\191", R .. R }, -- C0, C1: overlong
    { "\224\159\191", R .. R .. R },            -- overlong U+07FF
    { "\237\160\128", R .. R .. R },            -- U+D800, a surrogate
    { "\237\191\191", R .. R .. R },            -- U+DFFF
    { "\240\143\191\191", R .. R .. R .. R },   -- overlong U+FFFF
    { "\244\144\128\128", R .. R .. R .. R },   -- U+110000, above the last
    { "\245\128\128\128", R .. R .. R .. R }, { "\248", R }, { "\254", R }, { "\255", R },
    -- cut short, at the end or before another byte
    { "\194", R }, { "\226\130", R .. R }, { "\240\159\152", R .. R .. R }, { "a\226\130b", "a" .. R .. R .. "b" },
    { "\226\130\0", R .. R .. "\0" }, { "\226\226\130\172", R .. "\226\130\172" },
    -- around valid text, which stays as it is
    { "caf\233!", "caf" .. R .. "!" }, { "\255日本\128", R .. "日本" .. R },
  }
  for i, c in ipairs(cases) do
    it(string.format("case %d: %q", i, c[1]), function()
      assert.are.equal(c[2], core.utf8_repair(c[1]))
    end)
  end

  it("repairs what decode refuses, and keeps what it takes (random strings)", function()
    math.randomseed(7)
    local bytes = { 0x20, 0x41, 0x7F, 0x80, 0xBF, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5 }
    for _ = 1, 3000 do
      local t = {}
      for j = 1, math.random(0, 8) do
        t[j] = string.char(math.random(2) == 1 and bytes[math.random(#bytes)] or math.random(0x20, 0xFF))
      end
      local s = table.concat(t):gsub('["\\]', "x")
      local repaired = core.utf8_repair(s)
      local valid = core.decode('"' .. s .. '"') ~= nil
      assert.are.equal(valid, repaired == s, string.format("%q", s))
      assert(core.decode('"' .. repaired .. '"'), string.format("%q -> %q", s, repaired))
      if utf8 and _VERSION == "Lua 5.4" then -- 5.4's own strict decoder agrees
        assert.are.equal(utf8.len(s) ~= nil, valid, string.format("%q", s))
      end
    end
  end)

  it("raises on what is not a string", function()
    assert.has_error(function() core.utf8_repair(nil) end)
    assert.has_error(function() core.utf8_repair({}) end)
  end)
end)

-- The hash slot the Redis Cluster client routes by (src/hash_slot.c; its vectors against a real
-- cluster's CLUSTER KEYSLOT are in redis_cluster_spec.lua): here under valgrind and the
-- sanitizers too, with the edges of the hash-tag rule and a key of a megabyte.
describe("core.redis_slot", function()
  it("is CRC16/XMODEM mod 16384 of the key, or of its hash tag", function()
    local slot = core.redis_slot
    assert.are.equal(0x31C3, slot("123456789"))
    assert.are.equal(12182, slot("foo"))
    assert.are.equal(slot("tag"), slot("a{tag}b"))
    assert.are.equal(slot("{"), slot("{"))
    assert.are.equal(slot("x{}y"), slot("x{}y"))
    assert.are_not.equal(slot("y"), slot("x{}y"))
    assert.are.equal(slot("{b"), slot("a{{b}c"))
    assert.are.equal(slot("a{b"), slot("a{b"))
    assert.are.equal(0, slot(""))
    local big = string.rep("k", 1024 * 1024)
    assert.is_true(slot(big) >= 0 and slot(big) < 16384)
    assert.are.equal(slot("t"), slot(big .. "{t}"))
    assert.has_error(function() slot({}) end)
  end)
end)
