-- Every public function is documented: each name the modules export must appear in README.md.
local webhook = require "jicoo.webhook"
local store = require "jicoo.webhook.store"
local types = require "jicoo.webhook.types"
local support = require "support"

local readme = support.read("README.md")

-- (what the README calls it, how the README writes a use of it) for every exported function.
local function exported(module_name, module, prefix)
  local names = {}
  for name, value in pairs(module) do
    if type(value) == "function" and not name:match("^_") then
      names[#names + 1] = { module_name .. "." .. name, prefix .. name .. "(" }
    end
  end
  return names
end

local documented = {}
local function add(list)
  for _, entry in ipairs(list) do
    documented[#documented + 1] = entry
  end
end

add(exported("webhook", webhook, "webhook."))
for _, name in ipairs({ "memory", "shdict", "redis" }) do
  add({ { "store." .. name, "store." .. name .. "(" } })
end
assert(store.memory)
local router = webhook.router({ verify = false })
add(exported("router", getmetatable(router).__index, "router:"))
for type_name, methods in pairs(types.methods) do
  for name in pairs(methods) do
    documented[#documented + 1] = { type_name .. ":" .. name, ":" .. name .. "(" }
  end
end

describe("README", function()
  it("finds something to check", function()
    assert.is_true(#documented > 25)
  end)
  for _, entry in ipairs(documented) do
    it("documents " .. entry[1], function()
      assert.is_truthy(readme:find(entry[2], 1, true), entry[2] .. " is not in README.md")
    end)
  end
end)
