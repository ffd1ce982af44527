-- webhook.decode: the strict RFC 8259 decoder, against JSONTestSuite and by hand.
local webhook = require "jicoo.webhook"
local support = require "support"

local suite = support.fixtures .. "/JSONTestSuite/test_parsing"
local decode = webhook.decode
local has_integers = math.type ~= nil

describe("decode", function()
  describe("JSONTestSuite", function()
    local files = support.list(suite, "%.json$")
    it("finds the whole suite", function()
      assert.is_true(#files > 300)
    end)
    for _, name in ipairs(files) do
      local body = support.read(suite .. "/" .. name)
      local kind = name:sub(1, 2)
      if kind == "y_" then
        it("accepts " .. name, function()
          local _, msg, info = decode(body)
          assert.is_nil(msg)
          assert.is_nil(info)
        end)
      elseif kind == "n_" then
        it("rejects " .. name, function()
          local value, msg, info = decode(body)
          assert.is_nil(value)
          assert.is_string(msg)
          assert.is_truthy(({ syntax = true, encoding = true, limit = true })[info.code], msg)
        end)
      else
        it("answers " .. name .. " without raising", function()
          local ok, value, msg = pcall(decode, body)
          assert.is_true(ok, value)
          assert.is_true(value ~= nil or type(msg) == "string")
        end)
      end
    end
  end)

  describe("values", function()
    local cases = {
      { "[]", {} },
      { "{}", {} },
      { "[1, -2, 0.5, -0.25e1, 1E2]", { 1, -2, 0.5, -2.5, 100 } },
      { '"\\u00e9\\u20ac\\ud83d\\ude00"', "\195\169\226\130\172\240\159\152\128" },
      { '"\\"\\\\\\/\\b\\f\\n\\r\\t"', "\"\\/\b\f\n\r\t" },
      { '"a\\u0000b"', "a\0b" },
      { '{"a": {"b": [true, false]}}', { a = { b = { true, false } } } },
      { '{"a": 1, "a": 2}', { a = 2 } },
      { " \t\r\n[ 1 ]\n", { 1 } },
      { '"\127"', "\127" },
    }
    -- Three-byte UTF-8 at the edges of the fast path (E1..EC, EE..EF) and of the full check.
    local three_bytes = {
      { "\224\160\128", true },   -- E0 A0 80: U+0800, the first three-byte code point
      { "\224\159\191", false },  -- E0 9F BF: overlong
      { "\225\128\128", true },   -- E1 80 80: U+1000
      { "\236\191\191", true },   -- EC BF BF
      { "\237\159\191", true },   -- ED 9F BF: U+D7FF, just below the surrogates
      { "\237\160\128", false },  -- ED A0 80: a surrogate
      { "\238\128\128", true },   -- EE 80 80: U+E000
      { "\239\191\191", true },   -- EF BF BF: U+FFFF
      { "\239\191", false },       -- cut short before the closing quote
      { "\239\191\127", false },  -- a third byte that is not a continuation byte
      { "\227\129\130\227\129\132\227\129\134", true },  -- "あいう"
    }
    for _, case in ipairs(three_bytes) do
      local bytes, valid = case[1], case[2]
      it((valid and "accepts " or "rejects ") .. bytes:gsub(".", function(c)
        return string.format("%02X ", c:byte())
      end), function()
        for _, padding in ipairs({ "", "abcdefgh" }) do -- with and without room for 4-byte reads
          local value, msg, info = decode('"' .. padding .. bytes .. '"')
          if valid then
            assert.are.equal(padding .. bytes, value, msg)
          else
            assert.is_nil(value)
            assert.are.equal("encoding", info.code, msg)
          end
        end
      end)
    end

    for _, case in ipairs(cases) do
      it("decodes " .. case[1], function()
        assert.are.same(case[2], decode(case[1]))
      end)
    end

    it("keeps nulls as webhook.null by default, in arrays and objects", function()
      local value = decode('[null, {"a": null}]')
      assert.are.equal(webhook.null, value[1])
      assert.are.equal(webhook.null, value[2].a)
      assert.are.equal(webhook.null, decode("null"))
    end)

    it("uses opts.null for null", function()
      assert.are.same({ false, 1 }, decode("[null, 1]", { null = false }))
    end)

    it("makes integers of integer literals where Lua has them", function()
      local value = decode("[1, 1.0, 9007199254740993, -9223372036854775808, 9223372036854775808]")
      if has_integers then
        assert.are.equal("integer", math.type(value[1]))
        assert.are.equal("float", math.type(value[2]))
        assert.are.equal(9007199254740993, value[3])
        assert.are.equal(math.mininteger, value[4])
        assert.are.equal("float", math.type(value[5]))
      else
        assert.are.equal(1, value[1])
        assert.are.equal(9007199254740992, value[3])
      end
    end)

    it("reads -0 as tonumber does: the integer 0 where Lua has integers, else -0.0", function()
      local zero, float_zero = decode("-0"), decode("-0.0")
      assert.are.equal(tonumber("-0"), zero)
      if has_integers then
        assert.are.equal("integer", math.type(zero))
        assert.are.equal(math.huge, 1 / zero)
      else
        assert.are.equal(-math.huge, 1 / zero)
      end
      assert.are.equal(-math.huge, 1 / float_zero)
    end)

    it("reads long arrays in order past the batch size", function()
      local items = {}
      for i = 1, 1000 do
        items[i] = tostring(i)
      end
      local value = decode("[" .. table.concat(items, ",") .. "]")
      assert.are.equal(1000, #value)
      for i = 1, 1000 do
        assert.are.equal(i, value[i])
      end
    end)

    it("reads arrays deeper than the Lua stack allows in batches", function()
      local body = ("[" .. ("1,"):rep(40)):rep(900) .. "0" .. ("]"):rep(900)
      local value, msg = decode(body, { max_depth = 1000, max_values = 1e6 })
      assert.is_truthy(value, msg)
      local depth = 1
      while type(value[41]) == "table" do
        assert.are.equal(41, #value)
        value, depth = value[41], depth + 1
      end
      assert.are.equal(900, depth)
      assert.are.equal(0, value[41])
    end)
  end)

  describe("rejections", function()
    local cases = {
      { "[1,]", "syntax", 3 },
      { '{"a" 1}', "syntax", 5 },
      { "[01]", "syntax", 2 },
      { "[1.]", "syntax", 3 },
      { "[1e]", "syntax", 3 },
      { "[-]", "syntax", 2 },
      { '["a', "syntax", 3 },
      { '["\\x"]', "syntax", 2 },
      { '["\\u12"]', "syntax", 2 },
      { '["\\ud800"]', "encoding", 2 },
      { '["\\ud800\\u0041"]', "encoding", 2 },
      { '["\\udc00\\ud800"]', "encoding", 2 },
      { '["\255"]', "encoding", 2 },
      { '["\192\128"]', "encoding", 2 },
      { "[1e400]", "limit", 1 },
      { "[[[[1]]]]", "limit", 3, { max_depth = 3 } },
      { '"abcd"', "limit", 0, { max_string = 3 } },
      { "[1,2,3]", "limit", 5, { max_items = 2 } },
      { '{"a":1,"b":2}', "limit", 7, { max_keys = 1 } },
      { "[1,2]", "limit", 3, { max_values = 2 } },
    }
    for _, case in ipairs(cases) do
      it("rejects " .. case[1] .. " as " .. case[2] .. " at offset " .. case[3], function()
        local value, msg, info = decode(case[1], case[4])
        assert.is_nil(value)
        assert.are.equal(case[2], info.code, msg)
        assert.are.equal(case[3], info.offset, msg)
      end)
    end

    it("holds each limit exactly at its boundary", function()
      assert.is_truthy(decode("[[[1]]]", { max_depth = 3 }))
      assert.is_truthy(decode('"abc"', { max_string = 3 }))
      assert.is_truthy(decode("[1,2]", { max_items = 2 }))
      assert.is_truthy(decode('{"a":1}', { max_keys = 1 }))
      assert.is_truthy(decode("[1,2]", { max_values = 3 }))
      assert.is_truthy(decode("[1]", { max_size = 3 }))
      assert.are.equal("limit", select(3, decode("[1]", { max_size = 2 })).code)
    end)

    it("raises on parse options it does not take", function()
      assert.has_error(function() decode("[]", { level = "strict" }) end)
      assert.has_error(function() decode({}) end)
    end)
  end)
end)
