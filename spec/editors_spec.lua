-- The Lua Language Server addon (docs/lua-language-server): its typed tables' file is what
-- make.lua makes from the core's schema now, every field and method is in it, the hand-written
-- file and config.json are well formed, and `jicoo-webhook annotations` names the addon.
local support = require "support"
local runner = require "cli_runner"
local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.payload.types"

local ADDON = support.root .. "/docs/lua-language-server"
local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")

describe("the Lua Language Server addon", function()
  it("holds the typed tables as make.lua makes them from the schema now", function()
    local out, ok = support.run(interpreter .. " " .. support.quote(ADDON .. "/make.lua"))
    assert(ok, out)
    assert.are.equal(support.read(ADDON .. "/library/jicoo-webhook-types.lua"), out)
  end)

  it("names every schema field and every typed-table method", function()
    local text = support.read(ADDON .. "/library/jicoo-webhook-types.lua")
    for name, schema in pairs(core.schema) do
      assert.truthy(text:find("---@class jicoo.webhook." .. name .. "\n", 1, true), name)
      for _, field in ipairs(schema.fields) do
        assert.truthy(text:find("---@field " .. field.name .. "[? ]"), name .. "." .. field.name)
      end
      for method in pairs(types.methods[name]) do
        assert.truthy(text:find("function " .. name .. ":" .. method .. "(", 1, true), method)
      end
    end
  end)

  it("is Lua, and its config.json is JSON", function()
    for _, name in ipairs({ "jicoo-webhook-types.lua", "jicoo-webhook.lua" }) do
      local text = support.read(ADDON .. "/library/" .. name)
      assert.truthy((loadstring or load)(text), name)
    end
    local config = assert(core.decode(support.read(ADDON .. "/config.json")))
    assert.are.equal("jicoo-webhook", config.name)
    assert.is_table(config.settings)
  end)

  it("is named by jicoo-webhook annotations, with the .luarc.json lines that use it", function()
    local code, out = runner.run("annotations")
    assert.are.equal(0, code)
    assert.are.equal(ADDON, out:match("^([^\n]+)"))
    assert.truthy(out:find('"workspace.library": ["' .. ADDON .. '/library"]', 1, true), out)
  end)
end)
