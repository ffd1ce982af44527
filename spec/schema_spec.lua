-- The schema the C core walks (jicoo.webhook.core.schema) against the published JSON Schema,
-- so that the two cannot drift apart.
local core = require "jicoo.webhook.core"
local cjson = require "cjson"
local support = require "support"

local published = cjson.decode(support.read(support.fixtures .. "/jicoo-webhook.schema.json"))

-- Follows "$ref" to its definition.
local function resolve(node)
  local ref = node["$ref"]
  if ref then
    return resolve(published["$defs"][ref:match("^#/%$defs/(.+)$")])
  end
  return node
end

local function set(list)
  local s = {}
  for _, v in ipairs(list or {}) do
    s[v] = true
  end
  return s
end

-- Compares one published object schema with one of our types, field by field.
local function compare(type_name, node)
  local ours = core.schema[type_name]
  assert.is_truthy(ours, type_name)
  local required = set(node.required)
  local seen = {}
  for _, field in ipairs(ours.fields) do
    seen[field.name] = true
    local spec = resolve(node.properties[field.name] or error(type_name .. "." .. field.name .. " is not published"))
    local types = type(spec.type) == "table" and set(spec.type) or set({ spec.type })
    assert.are.equal(types.null == true, field.nullable, type_name .. "." .. field.name .. " nullable")
    assert.is_true(types[field.kind], type_name .. "." .. field.name .. " kind")
    assert.are.equal(required[field.name] == true, field.required ~= nil, type_name .. "." .. field.name .. " required")
    assert.are.same(spec.enum, field.values)
    if spec.format then
      assert.are.equal(spec.format, field.format)
    elseif spec.minLength == 1 then
      assert.are.equal("non-empty", field.format)
    else
      assert.is_nil(field.format)
    end
    if field.kind == "object" then
      compare(field.type, spec)
    elseif field.kind == "array" then
      local items = resolve(spec.items)
      assert.are.equal(items.type, field.items.kind)
      if field.items.kind == "object" then
        compare(field.items.type, items)
      end
    end
  end
  for name in pairs(node.properties) do
    assert.is_true(seen[name], type_name .. " lacks the published key " .. name)
  end
end

describe("schema", function()
  it("matches the published JSON Schema, type by type", function()
    compare("Event", published)
  end)

  it("relaxes at the lenient level only what the contract says", function()
    for type_name, t in pairs(core.schema) do
      for _, field in ipairs(t.fields) do
        local where = type_name .. "." .. field.name
        if field.required == "strict" then
          assert.is_truthy(({ cancelReason = true, cancelledAt = true, cancelledBy = true })[field.name], where)
        end
        assert.are.equal(where == "Answer.content", field.string_as_list, where)
      end
    end
  end)

  it("gives each type its metatable name", function()
    for type_name, t in pairs(core.schema) do
      assert.are.equal("jicoo.webhook." .. type_name, t.metatable)
      assert.are.equal(t.metatable, core.metatables[type_name].__name)
    end
  end)
end)
