-- The layers of lua/ (docs/internals.md, "Who may require whom"): every `require` of one of the
-- library's modules names a module of the same layer or of a layer below, never one above, so
-- that the dependencies point one way. Read from the files' text, as a maintainer reads them.
local support = require "support"

-- A module's layer, by its name: the first pattern that matches.
local LAYERS = {
  { "^jicoo%.webhook%.core$", "base" },
  { "^jicoo%.webhook%.sqlite3$", "base" },
  { "^jicoo%.webhook%.version$", "base" },
  { "^jicoo%.webhook%.options$", "base" },
  { "^jicoo%.webhook%.payload", "payload" },
  { "^jicoo%.net%.", "net" },
  { "^jicoo%.webhook%.journal", "journal" },
  { "^jicoo%.webhook%.store$", "journal" },        -- the claim stores' old name
  { "^jicoo%.webhook%.router", "router" },
  { "^jicoo%.api$", "api" },
  { "^jicoo%.webhook$", "facade" },
  { "^jicoo%.webhook%.nginx", "nginx" },
  { "^jicoo%.webhook%.openresty$", "nginx" },      -- the adapter's documented name
  { "^jicoo%.webhook%.receiver$", "nginx" },       -- the receiver's
  { "^jicoo%.webhook%.cli", "cli" },
}

-- What each layer may require, besides its own.
local MAY = {
  base = {},
  payload = { "base" },
  net = { "base" },
  journal = { "base", "payload", "net" },
  router = { "base", "payload", "net", "journal" },
  api = { "base", "payload", "net" },
  facade = { "base", "payload", "journal", "router" },
  nginx = { "base", "payload", "net", "journal", "router", "api", "facade" },
  cli = { "base", "payload", "net", "journal", "router", "api", "facade", "nginx" },
}

local function layer_of(module)
  for _, rule in ipairs(LAYERS) do
    if module:match(rule[1]) then
      return rule[2]
    end
  end
  return nil
end

local function module_of(path)
  local name = path:match("^lua/(.*)%.lua$"):gsub("/init$", ""):gsub("/", ".")
  return name
end

local files = {}
for path in support.run("cd " .. support.quote(support.root) .. " && find lua -name '*.lua' | sort"):gmatch("[^\n]+") do
  if path:match("^lua/jicoo/") then
    files[#files + 1] = path
  end
end

describe("the layers of lua/", function()
  it("knows the layer of every module", function()
    assert.truthy(#files > 30)
    for _, path in ipairs(files) do
      assert.truthy(layer_of(module_of(path)), module_of(path) .. " is in no layer")
    end
  end)

  for _, path in ipairs(files) do
    local module = module_of(path)
    it(module .. " requires nothing above its layer", function()
      local layer = layer_of(module)
      local allowed = { [layer] = true }
      for _, below in ipairs(MAY[layer] or {}) do
        allowed[below] = true
      end
      local text = support.read(support.root .. "/" .. path)
      for required in text:gmatch("require%s*%(?%s*[\"']([%w%._]+)[\"']") do
        local target = layer_of(required)
        if target then
          assert.truthy(allowed[target], module .. " (" .. layer .. ") requires " .. required
            .. " (" .. target .. ")")
        end
      end
    end)
  end

  it("finds an arrow against the direction (the check itself)", function()
    assert.is_nil(({ base = true })["router"])
    local allowed = {}
    for _, below in ipairs(MAY.journal) do
      allowed[below] = true
    end
    assert.is_nil(allowed[layer_of("jicoo.webhook.router.answer")])
    assert.is_true(allowed[layer_of("jicoo.net.redis")])
  end)
end)

-- One concern a file: no Lua or C file of the library, its command or its specs runs past
-- 500 lines (docs/internals.md).
describe("the files", function()
  local MAX_LINES = 500
  local listing = support.run("cd " .. support.quote(support.root)
    .. " && find lua src spec docs examples -type f \\( -name '*.lua' -o -name '*.c' -o -name '*.h' \\)"
    .. " | sort")
  local paths = {}
  for path in listing:gmatch("[^\n]+") do
    paths[#paths + 1] = path
  end

  it("are found", function()
    assert.truthy(#paths > 100, #paths .. " files")
  end)

  it("hold " .. MAX_LINES .. " lines at most", function()
    local long = {}
    for _, path in ipairs(paths) do
      local _, lines = support.read(support.root .. "/" .. path):gsub("\n", "")
      if lines > MAX_LINES then
        long[#long + 1] = path .. " (" .. lines .. ")"
      end
    end
    assert.are.same({}, long)
  end)
end)
