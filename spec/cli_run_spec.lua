-- jicoo-webhook run, as a subprocess with the interpreter running this spec: deliveries in files
-- replayed through a folder's handler scripts and what each handler did, --set and --strict, a
-- failing handler, a broken script or an invalid payload (exit 1), a folder that loads
-- nothing; the scripts' `ngx` stand-in (the nginx example replayed, timers run before exit, a
-- name it does not offer) and the process without one.
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

describe("jicoo-webhook run: the scripts' ngx", function()
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

  local function lines_of(out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    return lines
  end

  local booked = fixture_path("lenient", "portal_guest_booked.json")
  local cancelled = fixture_path("valid", "guest_cancelled.json")

  it("replays the nginx example's handler, its shared-dict counts in the log", function()
    local root = runner.root
    local files = {}
    for _, name in ipairs({ "1-guest_booked", "2-guest_booked", "3-guest_rescheduled", "4-host_cancelled" }) do
      files[#files + 1] = q(root .. "/examples/openresty/deliveries/" .. name .. ".json")
    end
    local code, out, err = jicoo("run " .. q(root .. "/examples/openresty/handlers") .. " " .. table.concat(files, " "))
    assert.are.equal(0, code, out .. err)
    local counts = {}
    for event, count in out:gmatch("any%.lua: ([%w_]+) #(%d+)") do
      counts[#counts + 1] = event .. " " .. count
    end
    assert.are.same({ "guest_booked 1", "guest_booked 2", "guest_rescheduled 1", "host_cancelled 1" }, counts)
    assert.falsy(out:find("FAILED", 1, true), out)
  end)

  it("ngx.log, shared dicts kept across deliveries, ngx.ctx per delivery, timers run before exit in order", function()
    script("any.lua", [[
      return function(ev)
        assert(ngx.ctx.seen == nil, "ngx.ctx is fresh")
        ngx.ctx.seen = true
        local n = ngx.shared.stats:incr("all", 1, 0)
        ngx.log(ngx.WARN, "delivery ", n, " ", ev.event)
        ngx.timer.at(60 - n, function(premature, count)
          ngx.log(ngx.INFO, "timer of delivery ", count, " premature=", tostring(premature),
            " total=", ngx.shared.stats:get("all"))
        end, n)
      end]])
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked) .. " " .. q(cancelled))
    assert.are.equal(0, code, out)
    local any = dir .. "/any.lua"
    local lines = lines_of(out)
    local expected = {
      "== " .. booked,
      "  [warn] " .. any .. ":5: delivery 1 guest_booked",
      "  ran " .. any,
      '  -> 200 {"event":"guest_booked","handlers":1,"ok":true,"result":"handled"}',
      "== " .. cancelled,
      "  [warn] " .. any .. ":5: delivery 2 guest_cancelled",
      "  ran " .. any,
      '  -> 200 {"event":"guest_cancelled","handlers":1,"ok":true,"result":"handled"}',
      "== timers",
      "  [info] " .. any .. ":7: timer of delivery 2 premature=false total=2",
      "  ran timer " .. any .. ":6 (+58s)",
      "  [info] " .. any .. ":7: timer of delivery 1 premature=false total=2",
      "  ran timer " .. any .. ":6 (+59s)",
    }
    assert.are.same(expected, lines)
  end)

  it("a failing timer: exit 1, FAILED timer shown", function()
    script("any.lua", "return function() ngx.timer.at(0, function() error('late failure') end) end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find("  FAILED timer " .. dir .. "/any.lua:1 (+0s): " .. dir .. "/any.lua:1: late failure",
      1, true), out)
  end)

  it("a name the stand-in does not offer fails the handler, saying what it offers", function()
    script("any.lua", "return function() return ngx.req.get_headers() end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find("FAILED " .. dir .. "/any.lua: " .. dir .. "/any.lua:1: ngx.req is not available in"
      .. " jicoo-webhook run (it offers ngx.config, ngx.ctx, ", 1, true), out)
  end)

  it("the scripts see ngx, the process does not: the library keeps to plain Lua", function()
    -- Were the stand-in the process's global, the library's clock would be the stand-in's,
    -- an hour ahead after ngx.sleep(3600).
    script("any.lua", [[
      local runtime = require "jicoo.net.runtime"
      return function()
        assert(type(ngx) == "table" and rawget(_G, "ngx") == ngx)
        ngx.sleep(3600)
        print("cosockets=" .. tostring(runtime.has_cosockets()))
        print("library clock behind by an hour=" .. tostring(ngx.now() - runtime.now() > 3500))
      end]])
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("cosockets=false\nlibrary clock behind by an hour=true\n", 1, true), out)
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
