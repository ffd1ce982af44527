-- webhook.decode against cjson.decode, an independent implementation: every JSONTestSuite y_
-- file and every fixture gives equal Lua values (or both refuse it), but for the exceptions
-- listed below, each with its reason. A listed exception must really differ, so the list
-- cannot go stale. Numbers compare by value: on 5.3+ decode gives integers for integer
-- literals where cjson gives floats, and 1 == 1.0.
local webhook = require "jicoo.webhook"
local cjson = require "cjson"
local support = require "support"

local has_integers = math.type ~= nil
local suite = support.fixtures .. "/JSONTestSuite/test_parsing"

-- Inputs, named relative to the shared folder, on which the two differ, and why.
local EXCEPTIONS = {
  ["fixtures/invalid/bad_utf8_name.json"] = {
    reason = "cjson does not check UTF-8 and passes the bad byte 0xC3 through; decode refuses it (encoding)",
    differs = true,
  },
}

-- Small documents that show the documented differences and agreements, as data.
local DOCUMENTS = {
  { name = "an integer beyond 2^53", json = "[9007199254740993]", differs = has_integers,
    reason = "on 5.3+ decode keeps an integer literal that fits in 64 bits exact; cjson reads every number as a double (2^53)" },
  { name = "the largest 64-bit integer", json = "[9223372036854775807]", differs = has_integers,
    reason = "the same: decode gives math.maxinteger, cjson the double 2^63" },
  { name = "an integer beyond 64 bits", json = "[18446744073709551616]", differs = false,
    reason = "both give the double 2^64" },
  { name = "a duplicate key", json = '{"a": 1, "a": 2}', differs = false,
    reason = "both keep the last value (RFC 8259 leaves it open; webhook.parse refuses it instead)" },
  { name = "minus zero", json = "[-0]", differs = false,
    reason = "equal by value: decode gives the integer 0 on 5.3+ (as tonumber('-0') does), cjson -0.0" },
  { name = "a float that is whole", json = "[1.0, 1e2]", differs = false,
    reason = "both give floats" },
  { name = "null", json = '[null, {"a": null}]', differs = false,
    reason = "webhook.null is cjson.null" },
}

-- Equal as Lua values, numbers by value.
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b
  end
  for k, v in pairs(a) do
    if not same(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

-- Whether decode and cjson.decode agree on s: equal values, or both refuse it.
local function agree(s)
  local ours = webhook.decode(s)
  local ok, theirs = pcall(cjson.decode, s)
  if not ok then
    theirs = nil
  end
  if ours == nil or theirs == nil then
    return ours == nil and theirs == nil
  end
  return same(ours, theirs)
end

-- Every input compared: { name relative to the shared folder, path }.
local function inputs()
  local list = {}
  for _, name in ipairs(support.list(suite, "^y_.*%.json$")) do
    list[#list + 1] = { "conformance/JSONTestSuite/test_parsing/" .. name, suite .. "/" .. name }
  end
  for _, folder in ipairs({ "valid", "lenient", "invalid" }) do
    for _, name in ipairs(support.list(support.fixtures .. "/" .. folder, "%.json$")) do
      list[#list + 1] = { "fixtures/" .. folder .. "/" .. name, support.fixtures .. "/" .. folder .. "/" .. name }
    end
  end
  return list
end

describe("decode and cjson.decode", function()
  local list = inputs()
  local compared = {}

  it("compare the whole suite's y_ files and every fixture", function()
    local y = 0
    for _, input in ipairs(list) do
      if input[1]:find("/y_", 1, true) then
        y = y + 1
      end
    end
    assert.is_true(y > 90)
    assert.is_true(#list - y > 20)
  end)

  for _, input in ipairs(list) do
    local name, path = input[1], input[2]
    compared[name] = true
    local exception = EXCEPTIONS[name]
    if exception then
      it("differ on " .. name .. " as listed: " .. exception.reason, function()
        assert.are.equal(not exception.differs, agree(support.read(path)))
      end)
    else
      it("agree on " .. name, function()
        assert.is_true(agree(support.read(path)))
      end)
    end
  end

  it("list no exception for an input they do not compare", function()
    for name in pairs(EXCEPTIONS) do
      assert.is_true(compared[name] ~= nil, name)
    end
  end)

  for _, doc in ipairs(DOCUMENTS) do
    it((doc.differs and "differ" or "agree") .. " on " .. doc.name .. ": " .. doc.reason, function()
      assert.are.equal(not doc.differs, agree(doc.json))
    end)
  end
end)
