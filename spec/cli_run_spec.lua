-- jicoo-webhook run, as a subprocess with the interpreter running this spec: deliveries in files
-- replayed through a folder's handler scripts and what each handler did, --set and --strict, a
-- failing handler, a broken script or an invalid payload (exit 1), and a folder that loads
-- nothing.
local support = require "support"
local runner = require "cli_runner"

local jicoo = runner.run
local fixture_path = runner.fixture_path
local q = support.quote

describe("jicoo-webhook run", function()
  local dir

  before_each(function()
    dir = runner.temp_dir()
  end)

  after_each(function()
    runner.remove_dir(dir)
  end)

  local function script(name, source)
    support.write(dir .. "/" .. name, source)
  end

  local booked = fixture_path("lenient", "portal_guest_booked.json")
  local cancelled = fixture_path("valid", "guest_cancelled.json")

  it("replays files through the scripts and prints what each handler did", function()
    script("guest_booked.lua", [[
      return function(ev, ctx)
        print("welcome " .. ev.object.contact.name)
        ctx.log("greeted %s", ev.object.uid)
      end]])
    script("any.lua", "return function(ev, ctx) ctx.log.warn('saw ' .. ev.event) end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked) .. " " .. q(cancelled) .. " " .. q(booked))
    assert.are.equal(0, code, out)
    local expected = {
      "== " .. booked,
      "  [warn] " .. dir .. "/any.lua: saw guest_booked",
      "welcome John Doe",
      "  [info] " .. dir .. "/guest_booked.lua: greeted ACDADADASS",
      "  ran " .. dir .. "/any.lua",
      "  ran " .. dir .. "/guest_booked.lua",
      '  -> 200 {"event":"guest_booked","handlers":2,"ok":true,"result":"handled"}',
      "== " .. cancelled,
      "  [warn] " .. dir .. "/any.lua: saw guest_cancelled",
      "  ran " .. dir .. "/any.lua",
      '  -> 200 {"event":"guest_cancelled","handlers":1,"ok":true,"result":"handled"}',
      "== " .. booked,
    }
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    for i, line in ipairs(expected) do
      assert.are.equal(line, lines[i])
    end
    -- The same delivery twice: the second is a duplicate and runs nothing.
    assert.truthy(lines[#lines]:find('"result":"duplicate"', 1, true), out)
  end)

  it("--set fills ctx.config", function()
    script("guest_booked.lua", "return function(_, ctx) print('channel=' .. ctx.config.channel) end\n")
    local code, out = jicoo("run --set channel=#sales=1 " .. q(dir) .. " " .. q(booked))
    assert.are.equal(0, code)
    assert.truthy(out:find("channel=#sales=1\n", 1, true), out)
  end)

  it("a failing handler: exit 1, FAILED and 500 shown", function()
    script("guest_booked.lua", "return function() error('smtp down') end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find("FAILED " .. dir .. "/guest_booked.lua: " .. dir .. "/guest_booked.lua:1: smtp down",
      1, true), out)
    assert.truthy(out:find("-> 500", 1, true), out)
  end)

  it("a broken script: exit 1 naming the file; the other scripts still run, its delivery fails", function()
    script("guest_booked.lua", "return function( print('x') end\n")
    script("any.lua", "return function() print('any ran') end\n")
    local code, out, err = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(err:find(dir .. "/guest_booked.lua:1:", 1, true), err)
    assert.truthy(out:find("any ran", 1, true), out)
    assert.truthy(out:find("FAILED " .. dir .. "/guest_booked.lua: the script did not load: " .. dir
      .. "/guest_booked.lua:1:", 1, true), out)
    assert.truthy(out:find("-> 500", 1, true), out)
  end)

  it("an invalid payload: exit 1 with the code and pointer", function()
    script("any.lua", "return function() print('must not run') end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(fixture_path("invalid", "uid_number.json")))
    assert.are.equal(1, code)
    assert.truthy(out:find("parse error: type: /object/uid: expected string", 1, true), out)
    assert.truthy(out:find("-> 400", 1, true), out)
    assert.falsy(out:find("must not run", 1, true))
  end)

  it("--strict parses at the strict level", function()
    script("any.lua", "return function() end\n")
    local code, out = jicoo("run --strict " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find('"code":"missing"', 1, true), out)
  end)
end)

describe("jicoo-webhook run: loading nothing", function()
  it("stops, exit 1, before replaying, when the folder does not exist or holds no script", function()
    local empty = runner.temp_dir()
    for _, folder in ipairs({ empty .. "/nosuchdir", empty }) do
      local code, out, err = jicoo("run " .. q(folder) .. " " .. q(fixture_path("valid",
        "guest_cancelled.json")))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.truthy(err:find(folder, 1, true), err)
    end
    local _, _, err = jicoo("run " .. q(empty) .. " " .. q(fixture_path("valid", "guest_cancelled.json")))
    assert.truthy(err:find("no handler scripts", 1, true), err)
    runner.remove_dir(empty)
  end)
end)
