-- Each handler script in its own world: what one script changes (the standard library's
-- functions, the string metatable, the library's modules, its own globals' metatable) no other
-- script and not the library sees; os.exit, debug hooks and finalizers are refused; the
-- delivery one handler changes is not what the next gets, nor what the answer names.
local shared = require "router_shared"
local support = require "support"
local journal_shared = require "journal_shared"

local signed = shared.signed
local BODY = shared.fixture("lenient", "portal_guest_booked.json")

describe("handler scripts in a world of their own", function()
  local dir
  before_each(function()
    dir = journal_shared.temp_dir()
  end)
  after_each(function()
    journal_shared.remove_dir(dir)
  end)

  -- A router with the scripts { name = source } of a fresh folder loaded.
  local function router_with(scripts)
    local folder = dir .. "/handlers"
    support.run("rm -rf " .. support.quote(folder) .. " && mkdir -p " .. support.quote(folder))
    for name, source in pairs(scripts) do
      support.write(folder .. "/" .. name, source)
    end
    local router, lines = shared.new_router({})
    local count, err = router:load(folder)
    return router, lines, count, err
  end

  it("keeps a script's replaced string.lower, table.concat and globals to itself", function()
    local router, _, count, err = router_with({
      ["any.lua"] = [[
        string.lower = function() return "hijacked" end
        table.concat = function() return "hijacked" end
        math.floor = nil
        print = nil
        return function() end]],
      ["guest_booked.lua"] = [[
        return function(ev, ctx)
          assert(string.lower("ABC") == "abc", "string.lower: " .. tostring(string.lower("ABC")))
          assert(("ABC"):lower() == "abc")
          assert(table.concat({ "a", "b" }) == "ab", "table.concat")
          assert(math.floor(1.5) == 1 and print ~= nil)
          ctx.log("%s", "still mine")
        end]],
    })
    assert.are.equal(2, count, err)
    local res = router:handle(BODY, signed(BODY))
    assert.are.equal(200, res.status, res.body)
    assert.are.equal("abc", string.lower("ABC"))
    assert.are.equal("ab", table.concat({ "a", "b" }))
  end)

  it("refuses changes to the string metatable, the library's modules and its metatables", function()
    for _, attempt in ipairs({
      'getmetatable("").__index = {}',
      'getmetatable("").__index.lower = function() return "x" end',
      'require("jicoo.webhook.payload.json").encode = function() return "hijacked-json" end',
      'package.loaded["jicoo.webhook.payload.json"].encode = function() return "x" end',
      'require("jicoo.webhook").parse = nil',
      'getmetatable(ev).__index.key = function() return "k" end',
      'setmetatable(ev, {})',
      'setmetatable(_G, {})',
      'setmetatable({}, { __gc = function() error("later") end })',
      'os.exit(3)',
      'debug.sethook(function() end, "l")',
      'getfenv(0).x = 1',
      'newproxy(true)',
    }) do
      local router, lines = router_with({
        ["guest_booked.lua"] = "return function(ev, ctx) " .. attempt .. " end",
      })
      local res = router:handle(BODY, signed(BODY))
      assert.are.equal(500, res.status, attempt .. ": " .. res.body)
      assert.truthy(table.concat(lines, "\n"):find("guest_booked.lua failed", 1, true), attempt)
    end
    -- the process is still here, its library untouched
    assert.are.equal('{"a":1}', require("jicoo.webhook.payload.json").encode({ a = 1 }))
    assert.is_nil(debug.gethook())
    assert.are.equal("abc", ("ABC"):lower())
  end)

  it("gives a script globals whose metatable it can neither read nor replace", function()
    local router = router_with({
      ["guest_booked.lua"] = [[
        assert(getmetatable(_G) == false, "getmetatable(_G): " .. tostring(getmetatable(_G)))
        assert(_G.string ~= nil and _G == _ENV or true)
        leaked = true
        return function() assert(rawget(_G, "leaked")) end]],
    })
    assert.are.equal(200, router:handle(BODY, signed(BODY)).status)
    assert.is_nil(rawget(_G, "leaked"))
  end)

  it("lets scripts read the library's modules, lists and metatables", function()
    local router, lines = router_with({
      ["guest_booked.lua"] = [[
        local webhook = require "jicoo.webhook"
        return function(ev, ctx)
          assert(#webhook.EVENTS >= 5, "EVENTS: " .. #webhook.EVENTS)
          for _, name in ipairs(webhook.EVENTS) do assert(type(name) == "string") end
          assert(getmetatable(ev).__name == "jicoo.webhook.Event")
          assert(ev:key():find("guest_booked/", 1, true) == 1)
          assert(webhook.parse(ctx.body, { level = "lenient" }).event == "guest_booked")
          local helper = assert(load("return 1 + 1"))
          assert(helper() == 2)
          ctx.log("ok %d", #ev.object.answers)
        end]],
    })
    local res = router:handle(BODY, signed(BODY))
    assert.are.equal(200, res.status, table.concat(lines, "\n"))
  end)

  it("hands each handler but the last a copy of the delivery, and answers what came", function()
    local router = router_with({
      ["any.lua"] = [[
        return {
          function(ev) ev.event = "rewritten"; ev.object.uid = "changed" end,
          function(ev) assert(ev.event == "guest_booked" and ev.object.uid == "ACDADADASS") end,
        }]],
      ["guest_booked.lua"] = [[
        return function(ev) assert(ev.object.uid == "ACDADADASS"); ev.event = "last" end]],
    })
    local res = router:handle(BODY, signed(BODY))
    assert.are.equal(200, res.status, res.body)
    assert.truthy(res.body:find('"event":"guest_booked"', 1, true), res.body)
  end)

  -- router:load's env option: how jicoo-webhook run gives scripts its `ngx` stand-in.
  local function folder_with(scripts)
    local folder = dir .. "/handlers"
    support.run("rm -rf " .. support.quote(folder) .. " && mkdir -p " .. support.quote(folder))
    for name, source in pairs(scripts) do
      support.write(folder .. "/" .. name, source)
    end
    return folder
  end

  it("adds env's globals to every script's world, as they are, and not to the process", function()
    local folder = folder_with({
      ["any.lua"] = "stand_in.loaded = (stand_in.loaded or 0) + 1\nreturn function() stand_in.any = true end\n",
      ["guest_booked.lua"] = [[
        local at_load = rawget(_G, "stand_in")
        return function()
          assert(stand_in == at_load and stand_in.any, "the same table, the any.lua handler ran first")
          stand_in.booked = true
        end]],
    })
    local extra = {}
    local router, lines = shared.new_router({})
    assert.are.equal(2, router:load(folder, { env = { stand_in = extra } }))
    assert.is_nil(rawget(_G, "stand_in"))
    local res = router:handle(BODY, signed(BODY))
    assert.are.equal(200, res.status, table.concat(lines, "\n"))
    assert.are.same({ loaded = 1, any = true, booked = true }, extra)
    assert.is_nil(rawget(_G, "stand_in"))
    -- reload takes it too; a load without it gives scripts nothing more
    assert.are.equal(2, router:reload({ folder }, { env = { stand_in = extra } }))
    assert.are.equal(2, extra.loaded)
    local count, err = router:reload({ folder })
    assert.is_nil(count)
    assert.truthy(err:find("stand_in", 1, true), err)
  end)

  local REFUSED = {
    { { env = { require = function() end } }, "router:load: option 'env' must be a table of global names" },
    { { env = { string = {} } }, "router:load: option 'env' must be a table of global names" },
    { { env = { collectgarbage = collectgarbage } }, "router:load: option 'env' must be a table of global names" },
    { { env = { [1] = true } }, "router:load: option 'env' must be a table of global names" },
    { { env = "ngx" }, "router:load: option 'env' must be a table of global names" },
    { { globals = {} }, "router:load: unknown option 'globals' (it takes env)" },
    { "env", "router:load: opts must be a table, got string" },
  }
  for _, case in ipairs(REFUSED) do
    it("refuses load options that would change a script's world: " .. case[2], function()
      local folder = folder_with({ ["any.lua"] = "return function() end\n" })
      local router = shared.new_router({})
      local ok, err = pcall(router.load, router, folder, case[1])
      assert.is_false(ok)
      assert.truthy(err:find(case[2], 1, true), err)
    end)
  end
end)
