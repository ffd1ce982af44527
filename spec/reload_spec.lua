-- Handler folders loaded again while the router runs: router:reload swaps in the scripts as
-- they are now (edited, added, removed), keeps the labels the journal knows them by, names a
-- broken one in health; scripts.stamp tells when a folder changed; and jicoo-webhook
-- check-handlers reports every script of a folder.
local shared = require "router_shared"
local support = require "support"
local journal_shared = require "journal_shared"
local scripts = require "jicoo.webhook.router.scripts"
local runner = require "cli_runner"

local signed = shared.signed
local BODY = shared.fixture("lenient", "portal_guest_booked.json")

describe("reloading handler folders", function()
  local dir, folder
  before_each(function()
    dir = journal_shared.temp_dir()
    folder = dir .. "/handlers"
    assert(support.run("mkdir -p " .. support.quote(folder)))
  end)
  after_each(function()
    journal_shared.remove_dir(dir)
  end)

  local function write(name, source)
    support.write(folder .. "/" .. name, source)
  end

  it("takes an edited, an added and a removed script, under the same labels", function()
    write("guest_booked.lua", "return function(ev, ctx) ctx.log('version one') end")
    write("any.lua", "return function() end")
    local router, lines = shared.new_router({ verify = false })
    assert.are.equal(2, router:reload({ folder }))
    local stamp = scripts.stamp(folder)
    assert.are.equal(stamp, scripts.stamp(folder))
    write("guest_booked.lua", "return function(ev, ctx) ctx.log('version two') end")
    write("guest_cancelled.lua", "return function() end")
    assert(os.remove(folder .. "/any.lua"))
    assert.are_not.equal(stamp, scripts.stamp(folder))
    assert.are.equal(2, router:reload({ folder }))
    local res = router:handle(BODY, {})
    assert.are.equal(200, res.status, res.body)
    assert.are.same({ { handler = folder .. "/guest_booked.lua", ok = true } }, res.handlers)
    local log = table.concat(lines, "\n")
    assert.truthy(log:find("version two", 1, true), log)
    assert.is_nil(log:find("version one", 1, true), log)
  end)

  it("keeps a delivery being handled on the handlers it began with", function()
    write("any.lua", "return { function(ev, ctx) ctx.config.router:reload({ ctx.config.folder }) end,"
      .. " function(ev, ctx) ctx.log('second of the old list') end }")
    local router, lines = shared.new_router({ verify = false, config = {} })
    router.config.router, router.config.folder = router, folder
    assert.are.equal(2, router:reload({ folder }))
    write("any.lua", "return function() end")
    assert.are.equal(200, router:handle(BODY, {}).status)
    assert.truthy(table.concat(lines, "\n"):find("second of the old list", 1, true))
    assert.are.equal(1, #router.routes)
  end)

  it("names a broken edit in the answer, the journal and health, which stays 200", function()
    write("guest_booked.lua", "return function() end")
    local router = shared.new_router({})
    assert.are.equal(1, router:reload({ folder }))
    write("guest_booked.lua", "return function( end")
    local count, err, failures = router:reload({ folder })
    assert.is_nil(count)
    assert.truthy(err:find("guest_booked.lua", 1, true), err)
    assert.are.equal(folder .. "/guest_booked.lua", failures[1].file)
    local res = router:handle(BODY, signed(BODY))
    assert.are.equal(500, res.status)   -- journaled as failed, retried once it is fixed
    router:run_due()
    local health = router:health()
    assert.are.equal(200, health.status, health.body)
    assert.truthy(health.body:find('"scripts":["' .. folder .. '/guest_booked.lua: ', 1, true),
      health.body)
    write("guest_booked.lua", "return function() end")
    assert.are.equal(1, router:reload({ folder }))
    assert.truthy(router:health().body:find('"scripts":"ok"', 1, true))
  end)
end)

describe("jicoo-webhook check-handlers", function()
  local dir
  before_each(function()
    dir = journal_shared.temp_dir()
  end)
  after_each(function()
    journal_shared.remove_dir(dir)
  end)

  it("reports every script, and exits 1 on a broken one or an empty folder", function()
    local code, out = runner.run("check-handlers " .. support.quote(support.root .. "/examples/notify"))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("ok     [^\n]*/examples/notify/dead_letter.lua: the dead%-letter alarm\n"), out)
    assert.truthy(out:find("ok     [^\n]*/guest_booked.lua: 1 handler for guest_booked\n"), out)
    assert.truthy(out:find("\n6 checked: 6 ok, 0 broken\n$"), out)

    local folder = dir .. "/h"
    assert(support.run("mkdir -p " .. support.quote(folder)))
    support.write(folder .. "/guest_booked.lua", "return function( end")
    support.write(folder .. "/guest_booking.lua", "return function() end")
    -- a script that reads nginx's ngx as it loads: the stand-in jicoo-webhook run gives
    support.write(folder .. "/any.lua", "local stats = ngx.shared.jicoo_stats\n"
      .. "return function(ev) stats:incr(ev.event, 1, 0) end")
    code, out = runner.run("check-handlers " .. support.quote(folder) .. " "
      .. support.quote(dir .. "/empty"))
    assert.are.equal(1, code, out)
    assert.truthy(out:find("ok     " .. folder .. "/any.lua: 1 handler for every event\n", 1, true), out)
    assert.truthy(out:find("broken " .. folder .. "/guest_booked.lua: ", 1, true), out)
    assert.truthy(out:find("ok     " .. folder .. "/guest_booking.lua: 1 handler for"
      .. " guest_booking (not an event Jicoo is known to send", 1, true), out)
    assert.truthy(out:find("broken " .. dir .. "/empty: ", 1, true), out)
    assert.truthy(out:find("\n4 checked: 2 ok, 2 broken\n$"), out)
  end)
end)
