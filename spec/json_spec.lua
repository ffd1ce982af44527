-- jicoo.webhook.payload.json: the JSON the library writes, read back by an independent decoder (cjson).
local json = require "jicoo.webhook.payload.json"
local cjson = require "cjson"

describe("json.encode", function()
  it("escapes what JSON requires and repairs bytes that are not UTF-8", function()
    local encoded = json.encode({
      a = "quote \" backslash \\ nl \n ctrl \1 bad \255 utf8 ü", n = 1.5, i = 3, t = true,
    })
    assert.are.same({ a = "quote \" backslash \\ nl \n ctrl \1 bad \239\191\189 utf8 ü", n = 1.5, i = 3, t = true },
      cjson.decode(encoded))
  end)

  local cases = {
    { "a flat object, keys sorted", { b = 1, a = "x", c = false }, '{"a":"x","b":1,"c":false}' },
    { "a list", { 1, "two", true }, '[1,"two",true]' },
    { "nested tables", { handlers = { ["a.lua"] = true }, errors = { { handler = "b", message = "m" } } },
      '{"errors":[{"handler":"b","message":"m"}],"handlers":{"a.lua":true}}' },
    { "an empty table as an object", {}, "{}" },
    { "integers without a fraction, other numbers exactly", { 1700000000, 0.1, -2 },
      "[1700000000,0.10000000000000001,-2]" },
    { "what JSON cannot hold as null", { 1 / 0, -1 / 0 }, "[null,null]" },
    { "a string", "é\0", '"é\\u0000"' },
  }
  for _, case in ipairs(cases) do
    it("writes " .. case[1], function()
      assert.are.equal(case[3], json.encode(case[2]))
    end)
  end

  it("refuses a cycle", function()
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end)
  end)
end)
