-- jicoo-webhook deliveries in bulk, as a subprocess on a SQLite journal a router wrote (and,
-- where redis-server and LuaSocket are installed, on a real redis-server): list, retry and drop
-- by filters, --all, --dry-run, --limit and --json, the count line, show by booking uid, stats,
-- the attempts that go on counting after a retry, and the walk over the matches a page at a
-- time (deliveries_filters.each_match).
local webhook = require "jicoo.webhook"
local journal = require "jicoo.webhook.journal"
local core = require "jicoo.webhook.core"
local support = require "support"
local runner = require "cli_runner"

local jicoo = runner.run
local q = support.quote
local BOOKED = support.read(runner.fixture_path("lenient", "portal_guest_booked.json"))
local CANCELLED = support.read(runner.fixture_path("valid", "host_cancelled.json"))
local DAY = 86400

local function key_of(uid)
  return "guest_booked/" .. uid .. "/2020-11-23T17:51:19.000Z"
end

local function lines_of(text)
  local lines = {}
  for line in text:gmatch("[^\n]+") do
    lines[#lines + 1] = line
  end
  return lines
end

-- Writes dead letters into j through a router whose handler fails with `message`: one per uid
-- in uids, received at `at` (Unix seconds).
local function dead_letters(j, uids, message, at)
  local r = webhook.router({ verify = false, journal = j, retry_delays = {},
    log = function() end, now = function() return at end })
  r:on("guest_booked", function() error(message, 0) end)
  for _, uid in ipairs(uids) do
    assert.are.equal(500, r:handle((BOOKED:gsub("ACDADADASS", uid))).status)
  end
end

local function numbered(prefix, n)
  local uids = {}
  for i = 1, n do
    uids[i] = prefix .. i
  end
  return uids
end

-- A router that handles whatever is due, counting each key's runs and the attempts seen.
local function counting_router(j)
  local runs, attempts = {}, {}
  local r = webhook.router({ verify = false, journal = j, log = function() end })
  r:on("guest_booked", function(_, ctx)
    runs[ctx.key] = (runs[ctx.key] or 0) + 1
    attempts[ctx.key] = ctx.attempt
  end)
  return r, runs, attempts
end

describe("jicoo-webhook deliveries in bulk (SQLite)", function()
  local dir, journal_dir, j
  local now = os.time()

  before_each(function()
    dir = runner.temp_dir()
    journal_dir = dir .. "/journal"
    j = journal.sqlite({ dir = journal_dir })
    assert(j:counts())   -- the folder and the database made
  end)

  after_each(function()
    require("jicoo.webhook.journal.sqlite_db").disconnect(journal_dir)
    runner.remove_dir(dir)
  end)

  local function deliveries(args)
    return jicoo("deliveries " .. args .. " --journal " .. q(journal_dir))
  end

  it("retries 100 dead letters a filter chooses, each once; a router then runs each once", function()
    dead_letters(j, numbered("crm", 100), "crm down", now - 60)
    dead_letters(j, numbered("ledger", 5), "ledger down", now - 60)
    local versions = {}
    for i = 1, 100 do
      versions[i] = j:get(key_of("crm" .. i)).version
    end

    local code, out, err = deliveries("retry --all --error 'crm down'")
    assert.are.equal(0, code, err)
    local lines = lines_of(out)
    assert.are.equal(101, #lines, out)
    assert.are.equal("100 deliveries retried: 100 dead", lines[101])
    for i = 1, 100 do
      local record = j:get(key_of("crm" .. i))
      assert.are.equal("failed", record.state)
      assert.are.equal(versions[i] + 1, record.version)   -- re-armed once
      assert.are.equal(1, record.attempts)
      assert.are.equal(1, record.budget_from)
      assert.truthy(record.rearmed_at)
    end
    for i = 1, 5 do
      assert.are.equal("dead", j:get(key_of("ledger" .. i)).state)
    end

    local r, runs, attempts = counting_router(j)
    assert.are.equal(100, (r:run_due()))
    assert.are.equal(0, (r:run_due()))
    for i = 1, 100 do
      local key = key_of("crm" .. i)
      assert.are.equal(1, runs[key], key)
      assert.are.equal(2, attempts[key], key)   -- the attempts go on counting
      assert.are.equal("done", j:get(key).state)
      assert.are.equal(2, j:get(key).attempts)
    end
    assert.is_nil(runs[key_of("ledger1")])
    code, out = deliveries("list")
    assert.are.equal(0, code)
    assert.truthy(out:find("\n5 deliveries: 5 dead\n$"), out)
  end)

  it("changes nothing with --dry-run, and says what would change", function()
    dead_letters(j, numbered("d", 3), "down", now - 60)
    local before = {}
    for i = 1, 3 do
      before[i] = j:get(key_of("d" .. i))
    end
    local code, out = deliveries("retry --all --dry-run")
    assert.are.equal(0, code)
    local lines = lines_of(out)
    assert.truthy(lines[1]:find("^would retry dead " .. key_of("d1"):gsub("%p", "%%%0")), out)
    assert.are.equal("3 deliveries would be retried (dry run: nothing changed): 3 dead", lines[4])
    code, out = deliveries("drop --all --dry-run --uid d2")
    assert.are.equal(0, code)
    assert.truthy(out:find("^would drop dead " .. key_of("d2"):gsub("%p", "%%%0")), out)
    assert.truthy(out:find("\n1 delivery would be dropped (dry run: nothing changed): 1 dead\n", 1,
      true), out)
    code, out = deliveries("retry --dry-run " .. q(key_of("d3")))
    assert.are.equal(0, code)
    assert.truthy(out:find("1 delivery would be retried", 1, true), out)
    for i = 1, 3 do
      local after = j:get(key_of("d" .. i))
      assert.are.same(before[i], after)
    end
  end)

  it("ends with a count line when nothing matches, and with --json on standard error", function()
    local code, out, err
    code, out = deliveries("list")
    assert.are.equal(0, code)
    assert.are.equal("0 deliveries\n", out)
    code, out = deliveries("retry --all")
    assert.are.equal(0, code)
    assert.are.equal("0 deliveries retried\n", out)
    code, out = deliveries("drop --all --yes")
    assert.are.equal(0, code)
    assert.are.equal("0 deliveries dropped\n", out)
    code, out, err = deliveries("list --json")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.are.equal("0 deliveries\n", err)
  end)

  it("chooses by --event, --uid, --since, --until and --limit", function()
    dead_letters(j, { "old" }, "down", now - 3 * DAY)
    dead_letters(j, { "new1", "new2" }, "down", now - 60)
    local r = webhook.router({ verify = false, journal = j, retry_delays = {},
      log = function() end })
    r:on("*", function() error("api down", 0) end)
    assert.are.equal(500, r:handle(CANCELLED).status)
    local cases = {
      { "--since 2d", { "new1", "new2", "host_cancelled" } },
      { "--until 2d", { "old" } },
      { "--since " .. os.date("!%Y-%m-%dT%H:%M:%SZ", now - 4 * DAY) .. " --until 1h",
        { "old" } },
      { "--event host_cancelled", { "host_cancelled" } },
      { "--uid new2", { "new2" } },
      { "--error 'api down'", { "host_cancelled" } },
      { "--state failed", {} },
      { "--event guest_booked --limit 2", { "old", "new1" } },
    }
    for _, case in ipairs(cases) do
      local code, out = deliveries("list " .. case[1])
      assert.are.equal(0, code, case[1])
      local lines = lines_of(out)
      assert.are.equal(#case[2] + 1, #lines, case[1] .. ":\n" .. out)
      for i, name in ipairs(case[2]) do
        assert.truthy(lines[i]:find(name, 1, true), case[1] .. ":\n" .. out)
      end
    end
    local _, out = deliveries("list --limit 2")
    assert.truthy(out:find("\n2 deliveries: 2 dead (--limit 2 reached: more match)\n", 1, true), out)
    _, out = deliveries("list --limit 4")
    assert.truthy(out:find("\n4 deliveries: 4 dead\n", 1, true), out)
  end)

  it("prints one JSON object a delivery with --json, a body only with --body", function()
    dead_letters(j, { "json\\u001b[2J" }, "down\27]0;x\7", now - 60)
    local code, out, err = deliveries("list --json")
    assert.are.equal(0, code)
    assert.are.equal("1 delivery: 1 dead\n", err)
    local lines = lines_of(out)
    assert.are.equal(1, #lines)
    assert.is_nil(out:find("[%z\1-\9\11-\31\127]"), out)
    local record = assert(core.decode(lines[1]))
    assert.are.equal("json\27[2J", record.uid)
    assert.are.equal("dead", record.state)
    assert.are.equal(1, record.attempts)
    assert.are.equal(0, record.budget_from)
    assert.are.equal("down\27]0;x\7", record.errors[1].message)
    assert.is_nil(record.body)
    out = select(2, deliveries("list --json --body"))
    assert.truthy(assert(core.decode(lines_of(out)[1])).body:find('"uid": "json', 1, true))
    code, out = deliveries("retry --all --json")
    assert.are.equal(0, code)
    record = assert(core.decode(lines_of(out)[1]))
    assert.are.equal("retried", record.result)
    code, out, err = deliveries("list --body")
    assert.are.equal("", out)
    assert.are.equal(2, code)
    assert.truthy(err:find("--body goes with --json", 1, true), err)
  end)

  it("shows a delivery by booking uid, every one of that booking, with its attempt history", function()
    dead_letters(j, { "bk" }, "crm down", now - 60)
    local r = webhook.router({ verify = false, journal = j, retry_delays = {},
      log = function() end })
    r:on("*", function() error("api down", 0) end)
    assert.are.equal(500, r:handle((CANCELLED:gsub('"uid": "[^"]*"', '"uid": "bk"', 1))).status)
    local code, out = deliveries("retry " .. q(key_of("bk")))
    assert.are.equal(0, code)
    assert.truthy(out:find("1 delivery retried: 1 dead", 1, true), out)
    local again = webhook.router({ verify = false, journal = j, retry_delays = {},
      log = function() end })
    again:on("guest_booked", function() error("crm still down", 0) end)
    assert.are.equal(1, (again:run_due()))
    code, out = deliveries("show bk")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("key:          " .. key_of("bk"), 1, true), out)
    assert.truthy(out:find("key:          host_cancelled/bk/", 1, true), out)
    assert.truthy(out:find("attempts:     2\nre%-armed:     %d[^\n]* after 1 attempt%(s%); 1 since"), out)
    assert.truthy(out:find("crm still down", 1, true), out)
    assert.truthy(out:find("\n2 deliveries of booking bk: 2 dead\n$"), out)
    code = deliveries("show nobody")
    assert.are.equal(1, code)
  end)

  it("counts the journal by state and by event (stats, --json)", function()
    dead_letters(j, numbered("s", 3), "down", now - 60)
    local r = counting_router(j)
    assert.are.equal(200, r:handle(CANCELLED).status)
    local code, out = deliveries("stats")
    assert.are.equal(0, code)
    local lines = lines_of(out)
    assert.are.equal("4 deliveries: 3 dead, 1 done", lines[1])
    assert.truthy(lines[2]:find("^event +running +failed +dead +done$"), lines[2])
    assert.truthy(lines[3]:find("^guest_booked +0 +0 +3 +0$"), lines[3])
    assert.truthy(lines[4]:find("^host_cancelled +0 +0 +0 +1$"), lines[4])
    code, out = deliveries("stats --json")
    assert.are.equal(0, code)
    assert.are.same({ total = 4, states = { dead = 3, done = 1 },
      events = { guest_booked = { dead = 3 }, host_cancelled = { done = 1 } } },
      core.decode(out))
    assert(journal.sqlite({ dir = dir .. "/empty" }):counts())
    code, out = jicoo("deliveries stats --journal " .. q(dir .. "/empty"))
    assert.are.equal(0, code)
    assert.are.equal("0 deliveries\n", out)
  end)

  it("refuses what would act on many without saying so, and times it cannot read", function()
    dead_letters(j, { "u1" }, "down", now - 60)
    local cases = {
      { "drop --all", "add --yes" },
      { "retry --event guest_booked", "add --all" },
      { "drop", "which delivery?" },
      { "retry " .. q(key_of("u1")) .. " --all", "not both" },
      { "list --since yesterday", "--since takes an ISO 8601 time" },
      { "list --until 2024-03-01T10:00:00", "has no time zone" },
      { "list --since 2024-02-30", "--since takes" },
      { "list --limit 0", "--limit takes a whole number" },
      { "retry --all --state done", "--state takes failed, dead" },
    }
    for _, case in ipairs(cases) do
      local code, out, err = deliveries(case[1])
      assert.are.equal(2, code, case[1])
      assert.are.equal("", out, case[1])
      assert.truthy(err:find(case[2], 1, true), case[1] .. ": " .. err)
    end
    assert.are.equal("dead", j:get(key_of("u1")).state)
  end)

  it("refuses a journal folder that is not there, naming it, for every action", function()
    for _, args in ipairs({ "list", "show k", "retry k", "retry --all", "drop --all --yes",
        "stats" }) do
      local code, out, err = jicoo("deliveries " .. args .. " --journal " .. q(dir .. "/nowhere"))
      assert.are.equal(1, code, args)
      assert.are.equal("", out, args)
      assert.truthy(err:find("no journal at " .. dir .. "/nowhere", 1, true), err)
    end
    assert.is_nil(io.open(dir .. "/nowhere"))
  end)

  -- Pages of 7: a retry over failed and dead deliveries re-arms each once, though each page
  -- turns dead ones into failed ones.
  it("walks every match a page at a time, each once, while retry changes them", function()
    local filters = require "jicoo.webhook.cli.deliveries_filters"
    dead_letters(j, numbered("p", 30), "down", now - 60)
    for i = 1, 10 do   -- a third of them failed (re-armed), the rest dead
      j:rearm(key_of("p" .. i), now)
    end
    local page = filters.PAGE
    filters.PAGE = 7
    local seen = {}
    local ok, more = filters.each_match(j, filters.DEFAULT_STATES.retry, {}, nil, function(record)
      seen[record.key] = (seen[record.key] or 0) + 1
      return j:rearm(record.key, now + 1)
    end)
    local limited = {}
    local ok_limited, more_limited = filters.each_match(j, { "failed" }, {}, 7, function(record)
      limited[#limited + 1] = record.key
      return true
    end)
    filters.PAGE = page
    assert.is_true(ok)
    assert.is_false(more)
    for i = 1, 30 do
      assert.are.equal(1, seen[key_of("p" .. i)], key_of("p" .. i))
    end
    assert.is_true(ok_limited)
    assert.is_true(more_limited)
    assert.are.equal(7, #limited)
  end)
end)

describe("jicoo-webhook deliveries in bulk (Redis)", function()
  local has_socket = pcall(require, "socket")
  local ok_servers, servers = pcall(require, "servers")
  if not (has_socket and ok_servers and servers.redis_server and servers.redis_cli) then
    pending("needs LuaSocket (lua-socket) and redis-server")
    return
  end
  local dir, server, j

  setup(function()
    dir = runner.temp_dir()
    server = assert(servers.redis(dir))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    runner.remove_dir(dir)
  end)

  before_each(function()
    server:cli("flushall")
    j = journal.redis({ port = server.port, read_timeout = 10000 })
  end)

  local function deliveries(args)
    return jicoo("deliveries " .. args .. " --redis 127.0.0.1:" .. server.port,
      "JICOO_REDIS_PASSWORD=")
  end

  it("retries 100 dead letters a filter chooses, each once; a router then runs each once", function()
    local now = os.time()
    dead_letters(j, numbered("crm", 100), "crm down", now - 60)
    dead_letters(j, numbered("ledger", 5), "ledger down", now - 60)
    local code, out = deliveries("retry --all --dry-run --error crm")
    assert.are.equal(0, code)
    assert.are.equal("100 deliveries would be retried (dry run: nothing changed): 100 dead\n",
      out:match("[^\n]*\n$"))
    assert.are.equal(105, j:counts().states.dead)
    code, out = deliveries("retry --all --error crm")
    assert.are.equal(0, code)
    assert.truthy(out:find("\n100 deliveries retried: 100 dead\n$"), out)
    for i = 1, 100 do
      local record = j:get(key_of("crm" .. i))
      assert.are.equal("failed", record.state)
      assert.are.equal(1, record.attempts)
      assert.are.equal(1, record.budget_from)
    end
    local r, runs, attempts = counting_router(j)
    assert.are.equal(100, (r:run_due()))
    assert.are.equal(0, (r:run_due()))
    for i = 1, 100 do
      local key = key_of("crm" .. i)
      assert.are.equal(1, runs[key], key)
      assert.are.equal(2, attempts[key], key)
    end
    code, out = deliveries("stats --json")
    assert.are.equal(0, code)
    assert.are.same({ total = 105, states = { dead = 5, done = 100 },
      events = { guest_booked = { dead = 5, done = 100 } } }, core.decode(out))
    code, out = deliveries("show ledger3")
    assert.are.equal(0, code)
    assert.truthy(out:find("ledger down", 1, true), out)
    code, out = deliveries("drop --all --yes --uid ledger3")
    assert.are.equal(0, code)
    assert.truthy(out:find("\n1 delivery dropped: 1 dead\n$"), out)
    assert.is_nil(j:get(key_of("ledger3")))
  end)
end)
