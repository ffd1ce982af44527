-- The journal's backends held to one contract (lua/jicoo/webhook/journal/init.lua): the same
-- sequence of acquire, update, due, rearm and remove, and the same queries, give the same
-- outcomes on the memory journal, the SQLite journal and, where redis-server and LuaSocket are
-- installed, the Redis journal against a real redis-server on 127.0.0.1. Then what only the
-- SQLite journal has: its files on a shared machine, its cap, its sweep, a full disk.
local journal = require "jicoo.webhook.journal"
local support = require "support"

local NOW = 1700000000
local LEASE = 60
local KEY = "guest_booked/bk_1/2024-03-01T10:00:05+09:00"

local function new_delivery(key)
  return { key = key or KEY, event = "guest_booked", uid = "bk_1", body = '{"a":1}\n',
    received_at = NOW }
end

local function temp_dir()
  local out = support.run("mktemp -d /tmp/jicoo-journal.XXXXXX")
  return (out:gsub("%s+$", ""))
end

local function remove_dir(dir)
  if dir and dir:match("^/tmp/jicoo%-journal%.") then
    support.run("rm -rf " .. support.quote(dir))
  end
end

-- The backends: name, make(dir) -> journal, and what sets them apart.
local backends = {
  { name = "memory", make = function() return journal.memory() end, durable = false },
  { name = "sqlite", make = function(dir) return journal.sqlite({ dir = dir .. "/journal" }) end,
    durable = true, keeps_done = true },
}

local redis_server, redis_dir
do
  local has_socket = pcall(require, "socket")
  local ok_servers, servers = pcall(require, "servers")
  if has_socket and ok_servers and servers.redis_server and servers.redis_cli then
    table.insert(backends, { name = "redis", durable = true, keeps_done = true,
      make = function()
        if not redis_server then
          redis_dir = temp_dir()
          redis_server = assert(servers.redis(redis_dir))
        end
        redis_server:cli("flushall")
        return journal.redis({ host = "127.0.0.1", port = redis_server.port })
      end })
  end
end

teardown(function()
  if redis_server then
    redis_server:stop()
    remove_dir(redis_dir)
  end
end)

for _, backend in ipairs(backends) do
  describe("journal." .. backend.name, function()
    local dir, j

    before_each(function()
      dir = temp_dir()
      j = backend.make(dir)
    end)

    after_each(function()
      remove_dir(dir)
    end)

    it("says whether it is durable", function()
      assert.are.equal(backend.durable, j.durable)
    end)

    it("writes a new delivery as running under a lease, its body kept", function()
      assert.are.equal("absent", (j:acquire(KEY, NOW, LEASE, nil, false)))
      local outcome, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.are.equal("new", outcome)
      assert.are.equal("running", record.state)
      assert.are.equal(1, record.attempts)
      assert.are.equal(NOW + LEASE, record.lease_until)
      assert.is_string(record.token)
      local stored = j:get(KEY)
      assert.are.equal('{"a":1}\n', stored.body)
      assert.are.equal("guest_booked", stored.event)
      assert.are.equal("bk_1", stored.uid)
      assert.are.equal(NOW, stored.received_at)
      assert.are.equal(record.token, stored.token)
    end)

    it("answers busy while the lease holds, and hands the delivery over once it runs out", function()
      local _, first = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.are.equal("busy", (j:acquire(KEY, NOW + LEASE - 1, LEASE, new_delivery(), true)))
      assert.are.same({}, j:due(NOW + LEASE - 1, 10))
      assert.are.same({ KEY }, (j:due(NOW + LEASE, 10)))
      local outcome, second = j:acquire(KEY, NOW + LEASE, LEASE, nil, false)
      assert.are.equal("taken", outcome)
      assert.are.equal(2, second.attempts)
      assert.are_not.equal(first.token, second.token)
      -- The first attempt's token no longer writes.
      assert.is_false(j:update(KEY, first.token, { state = "done" }, NOW + LEASE))
      assert.is_true(j:update(KEY, second.token, { handlers = { a = true } }, NOW + LEASE))
      assert.are.same({ a = true }, j:get(KEY).handlers)
    end)

    it("keeps a failed delivery until its next attempt is due, unless told to take it", function()
      local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_true(j:update(KEY, record.token, { state = "failed", next_at = NOW + 100,
        handlers = { a = true }, errors = { { handler = "b", message = "down" } } }, NOW))
      assert.are.equal("waiting", (j:acquire(KEY, NOW + 99, LEASE, new_delivery(), false)))
      assert.are.same({}, j:due(NOW + 99, 10))
      assert.are.same({ KEY }, (j:due(NOW + 100, 10)))
      local outcome, taken = j:acquire(KEY, NOW + 100, LEASE, nil, false)
      assert.are.equal("taken", outcome)
      assert.are.equal(2, taken.attempts)
      assert.are.same({ a = true }, taken.handlers)
      assert.are.same({ { handler = "b", message = "down" } }, taken.errors)
      assert.is_true(j:update(KEY, taken.token, { state = "failed", next_at = NOW + 500 }, NOW + 100))
      assert.are.equal("taken", (j:acquire(KEY, NOW + 101, LEASE, new_delivery(), true)))
    end)

    it("ends a delivery done: later copies are done, it is due no more", function()
      local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_true(j:update(KEY, record.token, { state = "done", handlers = { a = true },
        finished_at = NOW }, NOW))
      assert.are.equal("done", (j:acquire(KEY, NOW + 1, LEASE, new_delivery(), true)))
      assert.are.same({}, j:due(NOW + 10 * LEASE, 10))
      assert.is_false(j:update(KEY, record.token, { state = "failed", next_at = NOW }, NOW))
      if backend.keeps_done then
        local done = j:get(KEY)
        assert.are.equal("done", done.state)
        assert.is_nil(done.body)
        assert.are.same({ a = true }, done.handlers)
        assert.are.equal(KEY, j:list("done")[1].key)
      end
    end)

    it("keeps a dead letter until an operator rearms or removes it", function()
      local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_true(j:update(KEY, record.token, { state = "dead", finished_at = NOW,
        errors = { { handler = "b", message = "down" } } }, NOW))
      assert.are.equal("dead", (j:acquire(KEY, NOW + 1, LEASE, new_delivery(), true)))
      assert.are.same({}, j:due(NOW + 10 * LEASE, 10))
      local listed = j:list("dead")
      assert.are.equal(1, #listed)
      assert.are.equal(KEY, listed[1].key)
      assert.are.equal('{"a":1}\n', listed[1].body)

      local rearmed = j:rearm(KEY, NOW + 5)
      assert.are.equal("failed", rearmed.state)
      assert.are.equal(0, rearmed.attempts)
      assert.are.same({ KEY }, (j:due(NOW + 5, 10)))
      local outcome, taken = j:acquire(KEY, NOW + 5, LEASE, nil, false)
      assert.are.equal("taken", outcome)
      assert.are.equal(1, taken.attempts)
      assert.are.equal('{"a":1}\n', taken.body)
    end)

    it("rearms only failed and dead deliveries", function()
      assert.are.same({ nil, "not found" }, { j:rearm(KEY, NOW) })
      j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      local rearmed, why = j:rearm(KEY, NOW)
      assert.is_false(rearmed)
      assert.truthy(why:find("running", 1, true), why)
    end)

    it("removes a record, after which the key is new again", function()
      assert.are.same({ nil, "not found" }, { j:remove(KEY) })
      j:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_true(j:remove(KEY))
      assert.is_nil(j:get(KEY))
      assert.are.equal("new", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    end)

    it("lists by state", function()
      local keys = { "k/running/t", "k/failed/t", "k/dead/t" }
      for _, key in ipairs(keys) do
        local _, record = j:acquire(key, NOW, LEASE, new_delivery(key), false)
        local state = key:match("^k/(%a+)/")
        if state ~= "running" then
          j:update(key, record.token, { state = state, next_at = NOW + 1000 }, NOW)
        end
      end
      for _, key in ipairs(keys) do
        local state = key:match("^k/(%a+)/")
        local listed = j:list(state)
        assert.are.equal(1, #listed, state)
        assert.are.equal(key, listed[1].key)
        assert.are.equal(state, listed[1].state)
      end
      assert.are.equal(3, #j:list("all"))
    end)

    -- find and counts (skipped by a backend that has no queries)
    local with_queries = it

    -- Five deliveries of two bookings and two events, received a second apart, in these states.
    local function five()
      local rows = {
        { "guest_booked/bk_1/t1", "guest_booked", "bk_1", "done" },
        { "guest_cancelled/bk_1/t2", "guest_cancelled", "bk_1", "failed", "crm: down" },
        { "guest_booked/bk_2/t3", "guest_booked", "bk_2", "dead", "slack: 500 from hooks" },
        { "guest_booked/bk_3/t4", "guest_booked", "bk_3", "running" },
        { "guest_cancelled/bk_2/t5", "guest_cancelled", "bk_2", "dead", "crm: timeout" },
      }
      for i, row in ipairs(rows) do
        local key, event, uid, state, message = row[1], row[2], row[3], row[4], row[5]
        local delivery = { key = key, event = event, uid = uid, body = "{}", received_at = NOW + i }
        local _, record = j:acquire(key, NOW + i, LEASE, delivery, false)
        if state ~= "running" then
          assert.is_true(j:update(key, record.token, { state = state, next_at = NOW + 1000,
            finished_at = NOW + i, errors = message and { { handler = "h.lua", message = message } }
              or {} }, NOW + i))
        end
      end
      return rows
    end

    local function keys_of(records)
      local keys = {}
      for i, record in ipairs(records) do
        keys[i] = record.key
      end
      return keys
    end

    with_queries("finds by state, event, uid, time and error text, oldest first", function()
      five()
      local cases = {
        { {}, backend.keeps_done and { 1, 2, 3, 4, 5 } or { 2, 3, 4, 5 } },
        { { state = "dead" }, { 3, 5 } },
        { { event = "guest_cancelled" }, { 2, 5 } },
        { { uid = "bk_2" }, { 3, 5 } },
        { { since = NOW + 2, ["until"] = NOW + 4 }, { 2, 3 } },
        { { error = "crm" }, { 2, 5 } },
        { { error = "hooks", state = "dead" }, { 3 } },
        { { state = "dead", event = "guest_cancelled", uid = "bk_2" }, { 5 } },
        { { state = "failed", uid = "bk_9" }, {} },
      }
      local all = {
        "guest_booked/bk_1/t1", "guest_cancelled/bk_1/t2", "guest_booked/bk_2/t3",
        "guest_booked/bk_3/t4", "guest_cancelled/bk_2/t5",
      }
      for _, case in ipairs(cases) do
        local expected = {}
        for i, n in ipairs(case[2]) do
          expected[i] = all[n]
        end
        local records, after = j:find(case[1])
        assert.are.same(expected, keys_of(records))
        assert.is_nil(after)
      end
      local dead = j:find({ state = "dead" })
      assert.is_nil(dead[1].body)
      assert.are.equal("slack: 500 from hooks", dead[1].errors[1].message)
      assert.are.equal("bk_2", dead[1].uid)
    end)

    with_queries("finds a page at a time, with the cursor it gave", function()
      five()
      local seen, after, pages = {}, nil, 0
      repeat
        local records
        records, after = j:find({ event = "guest_booked", limit = 1, after = after })
        pages = pages + 1
        for _, record in ipairs(records) do
          seen[#seen + 1] = record.key
        end
      until after == nil or pages > 5
      local expected = backend.keeps_done and
        { "guest_booked/bk_1/t1", "guest_booked/bk_2/t3", "guest_booked/bk_3/t4" }
        or { "guest_booked/bk_2/t3", "guest_booked/bk_3/t4" }
      assert.are.same(expected, seen)
    end)

    with_queries("counts by state and by event", function()
      five()
      local counts = j:counts()
      assert.are.same({ running = 1, failed = 1, dead = 2, done = backend.keeps_done and 1 or nil },
        counts.states)
      assert.are.same({ running = 1, dead = 1, done = backend.keeps_done and 1 or nil },
        counts.events.guest_booked)
      assert.are.same({ failed = 1, dead = 1 }, counts.events.guest_cancelled)
      j:remove("guest_booked/bk_2/t3")
      j:rearm("guest_cancelled/bk_2/t5", NOW + 10)
      counts = j:counts()
      assert.are.same({ failed = 2, running = 1 }, { failed = counts.states.failed,
        running = counts.states.running })
      assert.is_nil(counts.states.dead)
    end)

    it("takes keys holding any byte, and long ones", function()
      -- A key is valid UTF-8, as every string parse gives (uids included).
    local keys = { "guest_booked/a%2Fb c\n\0\195\169/2024", "x/" .. string.rep("u", 5000) .. "/t" }
      for _, key in ipairs(keys) do
        assert.are.equal("new", (j:acquire(key, NOW, LEASE, new_delivery(key), false)))
        assert.are.equal(key, j:get(key).key)
        assert.are.equal("busy", (j:acquire(key, NOW, LEASE, new_delivery(key), false)))
      end
    end)
  end)
end

describe("journal.sqlite on disk", function()
  local core = require "jicoo.webhook.core"
  local dir, j

  before_each(function()
    dir = temp_dir()
    j = journal.sqlite({ dir = dir .. "/journal" })
  end)

  after_each(function()
    remove_dir(dir)
  end)

  local function mode(path)
    local info = core.file_info(path)
    return info and string.format("%o", info.mode)
  end

  it("keeps the database and SQLite's files 0600 in a 0700 folder, whatever the umask", function()
    -- a fresh process under umask 0, as nginx runs
    local script = dir .. "/write.lua"
    -- (SQLite removes -wal and -shm when the last connection closes: the child looks at them
    -- while its connection is open)
    support.write(script, "local j = require('jicoo.webhook.journal').sqlite({ dir = arg[1] })\n"
      .. "assert(j:acquire('k/u/t', 1, 60, { key = 'k/u/t', event = 'e', uid = 'u', body = '{}',"
      .. " received_at = 1 }, false))\n"
      .. "local core = require('jicoo.webhook.core')\n"
      .. "for _, name in ipairs({ '', '/journal.db', '/journal.db-wal', '/journal.db-shm' }) do\n"
      .. "  local info = assert(core.file_info(arg[1] .. name))\n"
      .. "  io.write(string.format('%s %o\\n', name, info.mode))\n"
      .. "end\n")
    local interpreter = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local out, ok = support.run("umask 0; " .. interpreter .. " " .. support.quote(script) .. " "
      .. support.quote(dir .. "/umask0") .. " 2>&1")
    assert(ok, out)
    assert.are.equal(" 700\n/journal.db 600\n/journal.db-wal 600\n/journal.db-shm 600\n", out)
  end)

  it("closes a folder of its own that others could read", function()
    assert(support.run("mkdir -m 755 " .. support.quote(dir .. "/open")))
    local opened = journal.sqlite({ dir = dir .. "/open" })
    assert.are.equal("new", (opened:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    assert.are.equal("700", mode(dir .. "/open"))
  end)

  -- Where the journal expects its own file, something planted by someone else is refused,
  -- named, never followed, never waited on.
  local PLANTED = {
    { "a link to a file", function(path, victim)
      support.write(victim, "precious")
      assert(support.run("ln -s " .. support.quote(victim) .. " " .. support.quote(path)))
    end, "a symbolic link" },
    { "a FIFO", function(path)
      assert(support.run("mkfifo " .. support.quote(path)))
    end, "a FIFO" },
    { "a hard link", function(path, victim)
      support.write(victim, "")
      assert(support.run("ln " .. support.quote(victim) .. " " .. support.quote(path)))
    end, "has 2 hard links" },
  }
  for _, case in ipairs(PLANTED) do
    for _, name in ipairs({ "journal.db", "journal.db-wal" }) do
      it("refuses " .. case[1] .. " at " .. name, function()
        local folder = dir .. "/planted"
        assert(support.run("mkdir -m 700 " .. support.quote(folder)))
        case[2](folder .. "/" .. name, dir .. "/victim")
        local planted = journal.sqlite({ dir = folder })
        local outcome, err, code = planted:acquire(KEY, NOW, LEASE, new_delivery(), false)
        assert.is_nil(outcome)
        assert.are.equal("unsafe", code)
        assert.truthy(err:find(folder .. "/" .. name, 1, true), err)
        assert.truthy(err:find(case[3], 1, true), err)
        if case[1] == "a link to a file" then
          assert.are.equal("precious", support.read(dir .. "/victim"))
        end
      end)
    end
  end

  it("refuses a folder that is a link", function()
    assert(support.run("mkdir -m 700 " .. support.quote(dir .. "/real") .. " && ln -s "
      .. support.quote(dir .. "/real") .. " " .. support.quote(dir .. "/link")))
    local outcome, err, code = journal.sqlite({ dir = dir .. "/link" }):get(KEY)
    assert.is_nil(outcome)
    assert.are.equal("unsafe", code)
    assert.truthy(err:find("a link, not a folder", 1, true), err)
  end)

  local as_root = support.run("id -u"):match("^0") and it or function(name)
    pending(name .. " (needs root)")
  end
  as_root("refuses a database another user owns", function()
    local folder = dir .. "/foreign"
    journal.sqlite({ dir = folder }):get(KEY)
    require("jicoo.webhook.journal.sqlite_db").disconnect(folder)   -- opened again below
    assert(support.run("chown nobody " .. support.quote(folder .. "/journal.db")))
    local outcome, err, code = journal.sqlite({ dir = folder }):get(KEY)
    assert.is_nil(outcome)
    assert.are.equal("unsafe", code)
    assert.truthy(err:find("owned by uid", 1, true), err)
  end)

  it("fails, naming the folder, where it cannot make it", function()
    support.write(dir .. "/file", "")
    local blocked = journal.sqlite({ dir = dir .. "/file/journal" })
    local outcome, err = blocked:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_nil(outcome)
    assert.truthy(err:find(dir .. "/file/journal", 1, true), err)
    assert.truthy(err:find("Not a directory", 1, true), err)
    assert.is_nil(blocked:due(NOW, 10))
  end)

  it("refuses new deliveries past max_open with the code full, and takes them once some are done", function()
    local capped = journal.sqlite({ dir = dir .. "/capped", max_open = 2 })
    local _, first = capped:acquire("a/1/t", NOW, LEASE, new_delivery("a/1/t"), false)
    capped:acquire("a/2/t", NOW, LEASE, new_delivery("a/2/t"), false)
    local outcome, err, code = capped:acquire("a/3/t", NOW, LEASE, new_delivery("a/3/t"), false)
    assert.is_nil(outcome)
    assert.are.equal("full", code)
    assert.truthy(err:find("2 deliveries not done (the cap is 2)", 1, true), err)
    assert.is_true(capped:update("a/1/t", first.token, { state = "done", finished_at = NOW }, NOW))
    assert.are.equal("new", (capped:acquire("a/3/t", NOW, LEASE, new_delivery("a/3/t"), false)))
  end)

  it("removes done records once their ttl has passed, and keeps the counts right", function()
    local short = journal.sqlite({ dir = dir .. "/short", ttl = 10 })
    local _, record = short:acquire(KEY, NOW, LEASE, new_delivery(), false)
    short:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW)
    short:due(NOW + 5, 10)
    assert.are.equal("done", short:get(KEY).state)
    short:due(NOW + 100, 10)   -- a scheduler's pass sweeps
    assert.is_nil(short:get(KEY))
    assert.is_nil(short:counts().states.done)
  end)

  it("answers a scheduler's pass by what is due, not by what is open", function()
    -- many records far from due, one due: the pass reads one
    for i = 1, 200 do
      local key = "many/" .. i .. "/t"
      local _, record = j:acquire(key, NOW, LEASE, new_delivery(key), false)
      j:update(key, record.token, { state = "failed", next_at = NOW + 86400 }, NOW)
    end
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    j:update(KEY, record.token, { state = "failed", next_at = NOW + 5 }, NOW)
    assert.are.same({ KEY }, (j:due(NOW + 10, 100)))
    local db = require("jicoo.webhook.sqlite3").open(dir .. "/journal/journal.db")
    local plan = db:prepare("EXPLAIN QUERY PLAN SELECT key FROM deliveries WHERE due_at <= ?1"
      .. " ORDER BY due_at LIMIT ?2"):query(NOW, 100)
    db:close()
    local detail = {}
    for i, row in ipairs(plan) do
      detail[i] = row.detail
    end
    assert.truthy(table.concat(detail, "; "):find("USING INDEX deliveries_due", 1, true),
      table.concat(detail, "; "))
  end)

  -- Two processes on one journal: a delivery is claimed once.
  it("lets one of two processes claim a delivery, the other sees it busy", function()
    local other = journal.sqlite({ dir = dir .. "/journal" })
    assert.are.equal("new", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    assert.are.equal("busy", (other:acquire(KEY, NOW, LEASE, new_delivery(), false)))
  end)

  -- A real full disk: a 1 MiB tmpfs (root can mount one; elsewhere the case is pending).
  it("fails, naming the cause, on a full disk, and keeps the record it had whole", function()
    local mount = dir .. "/small"
    assert(support.run("mkdir -p " .. support.quote(mount)))
    local _, mounted = support.run("mount -t tmpfs -o size=1m tmpfs " .. support.quote(mount)
      .. " 2>/dev/null")
    if not mounted then
      pending("cannot mount a tmpfs here (needs root)")
      return
    end
    local ok, err = pcall(function()
      local full = journal.sqlite({ dir = mount .. "/journal" })
      local _, record = full:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_truthy(record)
      support.run("dd if=/dev/zero of=" .. support.quote(mount .. "/filler") .. " bs=4k 2>/dev/null")
      local big = new_delivery("big/one/t")
      big.body = string.rep("x", 200 * 1024)
      local outcome, write_err, code = full:acquire("big/one/t", NOW, LEASE, big, false)
      assert.is_nil(outcome)
      assert.are.equal("full", code)
      assert.truthy(write_err:find("full", 1, true), write_err)
      assert.is_nil(full:get("big/one/t"))
      local kept = full:get(KEY)
      assert.are.equal("running", kept.state)
      assert.are.equal('{"a":1}\n', kept.body)
      os.remove(mount .. "/filler")
      local again, again_err = full:acquire("big/one/t", NOW, LEASE, big, false)
      assert.are.equal("new", again, again_err)
    end)
    -- the database closed, or the mount stays busy
    require("jicoo.webhook.journal.sqlite_db").disconnect(mount .. "/journal")
    support.unmount(mount)
    assert(ok, err)
  end)
end)

describe("journal.redis in Redis", function()
  local ok_socket, socket = pcall(require, "socket")
  local ok_servers, servers = pcall(require, "servers")
  if not (ok_socket and ok_servers and servers.redis_server and servers.redis_cli) then
    pending("needs LuaSocket (lua-socket) and redis-server")
    return
  end
  local quote = support.quote
  local dir, server, j

  setup(function()
    dir = temp_dir()
    server = assert(servers.redis(dir))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    remove_dir(dir)
  end)

  before_each(function()
    server:cli("flushall")
    -- (read_timeout bounds a reply whole: under valgrind reading a page of records is slow)
    j = journal.redis({ port = server.port, prefix = "t:", ttl = 100, read_timeout = 10000 })
  end)

  local function cli(command, ...)
    local args = { command }
    for i = 1, select("#", ...) do
      args[#args + 1] = quote((select(i, ...)))
    end
    return server:cli(table.concat(args, " "))
  end

  -- Counts the requests the journal's client sends (each is one round trip) from here on.
  -- Counts the requests the client sends on its open connection (plain Lua keeps one).
  local function count_round_trips(client)
    local real = client.conn
    local counter = { sends = 0 }
    client.conn = setmetatable({
      send = function(_, data) counter.sends = counter.sends + 1 return real:send(data) end,
    }, { __index = real })
    return counter
  end

  local function calls(command)
    return tonumber(server:cli("info commandstats"):match("cmdstat_" .. command .. ":calls=(%d+)")
      or 0)
  end

  it("keeps a record as a hash, and the keys due and dead in sorted sets", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal("running", cli("hget", "t:d:" .. KEY, "state"))
    assert.are.equal('{"a":1}', cli("hget", "t:d:" .. KEY, "body"))
    assert.are.equal("{}", cli("hget", "t:d:" .. KEY, "handlers"))
    assert.are.equal("[]", cli("hget", "t:d:" .. KEY, "errors"))
    assert.are.equal(tostring(NOW + LEASE), cli("zscore", "t:due", KEY))
    assert.is_true(j:update(KEY, record.token, { state = "failed", next_at = NOW + 30,
      handlers = { a = true }, errors = { { handler = "b", message = "down" } } }, NOW))
    assert.are.equal(tostring(NOW + 30), cli("zscore", "t:due", KEY))
    assert.are.equal('{"a":true}', cli("hget", "t:d:" .. KEY, "handlers"))
    assert.are.equal('[{"handler":"b","message":"down"}]', cli("hget", "t:d:" .. KEY, "errors"))
    local _, taken = j:acquire(KEY, NOW + 30, LEASE, nil, false)
    assert.are.equal("", cli("hget", "t:d:" .. KEY, "next_at"))
    assert.is_true(j:update(KEY, taken.token, { state = "dead", finished_at = NOW + 40 }, NOW + 40))
    assert.are.equal("", cli("zscore", "t:due", KEY))
    assert.are.equal(tostring(NOW + 40), cli("zscore", "t:dead", KEY))
    assert.are.equal("-1", cli("ttl", "t:d:" .. KEY))
    assert.truthy(j:rearm(KEY, NOW + 50))
    assert.are.equal("", cli("zscore", "t:dead", KEY))
    assert.are.equal(tostring(NOW + 50), cli("zscore", "t:due", KEY))
    assert.is_true(j:remove(KEY))
    assert.are.equal("0", cli("exists", "t:d:" .. KEY))
    assert.are.equal("0", cli("zcard", "t:due"))
  end)

  it("drops a done record's body, takes it off both sets and keeps it until the sweep after the ttl", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_true(j:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW))
    -- Redis's own expiry only as a backstop, a day after the ttl
    local ttl = tonumber(cli("ttl", "t:d:" .. KEY))
    assert.truthy(ttl > 86490 and ttl <= 86500, tostring(ttl))
    assert.are.equal("0", cli("hexists", "t:d:" .. KEY, "body"))
    assert.are.equal("0", cli("zcard", "t:due"))
    assert.are.equal("0", cli("zcard", "t:dead"))
    assert.are.equal(NOW + 100, j:get(KEY).expires_at)
    assert.are.same({}, j:due(NOW + 99, 10))    -- a sweep, before its time
    assert.are.equal("done", j:get(KEY).state)
    assert.are.same({}, j:due(NOW + 104, 10))   -- the next, 5 s on, removes it
    assert.is_nil(j:get(KEY))
    assert.are.equal("new", (j:acquire(KEY, NOW + 104, LEASE, new_delivery(), false)))
  end)

  -- The indexes, read with a client of our own (replies as Lua tables).
  local function raw()
    return require("jicoo.net.redis").new({ port = server.port })
  end

  local function members(client, key)
    local list = assert(client:call("ZRANGE", key, 0, -1, "WITHSCORES"))
    local set = {}
    for i = 1, #list, 2 do
      set[list[i]] = tonumber(list[i + 1])
    end
    return set
  end

  local function counters(client)
    local flat = assert(client:call("HGETALL", "t:counts"))
    local map = {}
    for i = 1, #flat, 2 do
      if flat[i + 1] ~= "0" then
        map[flat[i]] = tonumber(flat[i + 1])
      end
    end
    return map
  end

  it("keeps its indexes and counters with each change: new, taken, update, rearm, remove", function()
    local r = raw()
    local key = "guest_booked:x/bk_7/t"
    local delivery = { key = key, event = "guest:booked", uid = "bk_7", body = "{}", received_at = NOW + 0.25 }
    local _, record = j:acquire(key, NOW, LEASE, delivery, false)
    local at = NOW + 0.25
    local function expect(state_sets, counts, done)
      for _, state in ipairs({ "running", "failed", "dead" }) do
        assert.are.same(state_sets[state] and { [key] = at } or {}, members(r, "t:s:" .. state), state)
      end
      assert.are.same(counts, counters(r))
      assert.are.same(done or {}, members(r, "t:done:guest:booked"))
    end
    assert.are.same({ [key] = at }, members(r, "t:received"))
    assert.are.same({ [key] = at }, members(r, "t:u:bk_7"))
    expect({ running = true }, { ["running:guest:booked"] = 1 })
    assert.is_nil(j:get(key).indexed)

    assert.is_true(j:update(key, record.token, { state = "failed", next_at = NOW + 10 }, NOW))
    expect({ failed = true }, { ["failed:guest:booked"] = 1 })
    local _, taken = j:acquire(key, NOW + 10, LEASE, nil, false)
    expect({ running = true }, { ["running:guest:booked"] = 1 })
    assert.is_true(j:update(key, taken.token, { state = "dead", finished_at = NOW + 20 }, NOW + 20))
    expect({ dead = true }, { ["dead:guest:booked"] = 1 })
    assert.are.same({ states = { dead = 1 }, events = { ["guest:booked"] = { dead = 1 } } }, j:counts())

    assert.truthy(j:rearm(key, NOW + 30))
    expect({ failed = true }, { ["failed:guest:booked"] = 1 })
    _, taken = j:acquire(key, NOW + 30, LEASE, nil, false)
    assert.is_true(j:update(key, taken.token, { state = "done", finished_at = NOW + 40 }, NOW + 40))
    expect({}, {}, { [key] = NOW + 140 })
    assert.are.equal("1", cli("sismember", "t:events", "guest:booked"))
    assert.are.same({ states = { done = 1 }, events = { ["guest:booked"] = { done = 1 } } }, j:counts())

    assert.is_true(j:remove(key))
    expect({}, {})
    assert.are.same({}, members(r, "t:received"))
    assert.are.equal("0", cli("exists", "t:u:bk_7"))
    assert.are.same({ states = {}, events = {} }, j:counts())
    r:close()
  end)

  it("counts a done record until the sweep after its ttl, then forgets it with its entries", function()
    local short = journal.redis({ port = server.port, prefix = "t:", ttl = 10 })
    for i = 1, 3 do
      local key = "guest_booked/bk_" .. i .. "/t"
      local delivery = new_delivery(key)
      delivery.uid = "bk_" .. i
      local _, record = short:acquire(key, NOW, LEASE, delivery, false)
      assert.is_true(short:update(key, record.token, { state = "done", finished_at = NOW + i }, NOW + i))
    end
    assert.are.same({ done = 3 }, short:counts().states)
    -- One hash gone before the sweep (as the EXPIRE backstop or an eviction drops it).
    cli("del", "t:d:guest_booked/bk_3/t")
    assert.are.same({ done = 3 }, short:counts().states)
    short:due(NOW + 5, 10)                      -- sweeps: none has expired yet
    assert.are.equal("3", cli("zcard", "t:received"))
    short:due(NOW + 9, 10)                      -- not 5 s since the last sweep: none
    assert.are.same({ done = 3 }, short:counts().states)
    short:due(NOW + 12, 10)                     -- bk_1 and bk_2 expired at NOW + 11 and NOW + 12
    local counts = short:counts()
    assert.are.same({ done = 1 }, counts.states)
    assert.are.same({ guest_booked = { done = 1 } }, counts.events)
    assert.is_nil(short:get("guest_booked/bk_1/t"))
    assert.are.equal("0", cli("exists", "t:u:bk_1"))
    short:due(NOW + 20, 10)
    assert.are.same({ states = {}, events = {} }, short:counts())
    assert.are.equal("0", cli("zcard", "t:received"))
    assert.are.equal("0", cli("exists", "t:events"))
    assert.are.same({}, short:find({}))
    -- the booking of the hash dropped before the sweep keeps its key (its uid went with it)
    assert.are.equal("1", cli("zcard", "t:u:bk_3"))
    assert.are.same({}, short:find({ uid = "bk_3" }))
  end)

  it("sweeps at most a batch a pass, and again at the next pass while more wait", function()
    local short = journal.redis({ port = server.port, prefix = "t:", ttl = 1 })
    local r = raw()
    -- 600 done records straight into the sets (the batch is 500)
    local commands = {}
    for i = 1, 600 do
      local key = "k/" .. i
      commands[#commands + 1] = { "HSET", "t:d:" .. key, "key", key, "event", "e", "uid", "u", "state", "done",
        "received_at", NOW, "expires_at", NOW + 1, "indexed", "1", "attempts", 1, "version", 2,
        "handlers", "{}", "errors", "[]" }
      commands[#commands + 1] = { "ZADD", "t:received", NOW, key }
      commands[#commands + 1] = { "ZADD", "t:done:e", NOW + 1, key }
    end
    commands[#commands + 1] = { "SADD", "t:events", "e" }
    assert(r:pipeline(commands))
    assert.are.equal(600, short:counts().states.done)
    short:due(NOW + 2, 10)
    assert.are.equal(100, short:counts().states.done)
    short:due(NOW + 3, 10)   -- the last pass was full: another, though 5 s have not passed
    assert.is_nil(short:counts().states.done)
    assert.are.equal("0", cli("zcard", "t:received"))
    r:close()
  end)

  it("finds by uid through the booking's index, reading only its records", function()
    for i = 1, 30 do
      local key = "guest_booked/bk_" .. (i % 10) .. "/t" .. i
      local delivery = { key = key, event = "guest_booked", uid = "bk_" .. (i % 10), body = "{}", received_at = NOW + i }
      j:acquire(key, NOW + i, LEASE, delivery, false)
    end
    j:find({ uid = "bk_none" })   -- loads the script
    local hmget, evalsha = calls("hmget"), calls("evalsha")
    local records = j:find({ uid = "bk_3" })
    assert.are.same({ "guest_booked/bk_3/t3", "guest_booked/bk_3/t13", "guest_booked/bk_3/t23" },
      { records[1].key, records[2].key, records[3].key })
    assert.are.equal(3, #records)
    assert.is_nil(records[1].body)
    assert.are.equal(3, calls("hmget") - hmget)       -- the three records, no other
    assert.are.equal(1, calls("evalsha") - evalsha)
    -- its index key holds a glob character and a colon: nothing is escaped or walked
    j:acquire("x/b*[:]/t", NOW, LEASE, { key = "x/b*[:]/t", event = "e", uid = "b*[:]", body = "", received_at = NOW }, false)
    assert.are.equal("x/b*[:]/t", j:find({ uid = "b*[:]" })[1].key)
  end)

  it("costs a bounded number of round trips a page, and never reads the whole journal for one", function()
    local r = raw()
    local commands = {}
    for i = 1, 2500 do
      local key = string.format("k/%04d", i)
      commands[#commands + 1] = { "HSET", "t:d:" .. key, "key", key, "event", i % 2 == 0 and "a" or "b", "uid", "u" .. i,
        "state", "running", "received_at", NOW + i, "lease_until", NOW + LEASE, "indexed", "1", "attempts", 1,
        "version", 1, "handlers", "{}", "errors", i == 2400 and '[{"handler":"h","message":"needle"}]' or "[]" }
      commands[#commands + 1] = { "ZADD", "t:received", NOW + i, key }
      commands[#commands + 1] = { "ZADD", "t:s:running", NOW + i, key }
    end
    commands[#commands + 1] = { "HSET", "t:counts", "running:a", 1250, "running:b", 1250 }
    assert(r:pipeline(commands))
    j:find({ limit = 1 })   -- loads the script
    j:counts()
    local counter = count_round_trips(j.client)
    local hmget, evalsha = calls("hmget"), calls("evalsha")
    local page, after = j:find({ limit = 10 })
    assert.are.equal(1, counter.sends)
    assert.are.equal(evalsha + 1, calls("evalsha"))
    assert.are.equal(11, calls("hmget") - hmget)      -- one more tells whether a next page exists
    assert.are.equal("k/0001", page[1].key)
    assert.are.same({ received_at = NOW + 10, key = "k/0010" }, after)
    page, after = j:find({ limit = 10, after = after, event = "a", since = NOW + 1000 })
    assert.are.equal(2, counter.sends)
    assert.are.equal("k/1000", page[1].key)
    assert.are.equal("k/1018", page[10].key)
    assert.are.same({ received_at = NOW + 1018, key = "k/1018" }, after)
    -- what no index narrows costs a round trip per FIND_READS entries read
    local reads = require("jicoo.webhook.journal.redis").FIND_READS
    page, after = j:find({ error = "needle" })
    assert.are.equal(2 + math.ceil(2500 / reads), counter.sends)
    assert.are.same({ "k/2400" }, { page[1].key })
    assert.is_nil(after)
    local sends = counter.sends
    page = j:find({ ["until"] = NOW + 3 })
    assert.are.equal(sends + 1, counter.sends)
    assert.are.equal(2, #page)
    assert.are.equal(evalsha + sends + 1, calls("evalsha"))   -- every round trip one script
    assert.are.equal(2500, #j:find({ state = "running" }))
    sends = counter.sends
    assert.are.same({ states = { running = 2500 }, events = { a = { running = 1250 }, b = { running = 1250 } } },
      j:counts())                                              -- the counters: one round trip
    assert.are.equal(sends + 1, counter.sends)
    assert.are.equal(2500, #j:list("all"))   -- the index named a page at a time
    r:close()
  end)

  it("finds error text that JSON escapes, and text in a handler's name", function()
    local messages = { 'said "no" \\ twice', "caf\195\169 closed", "a/b: 404", "plain" }
    for i, message in ipairs(messages) do
      local key = "k/" .. i
      local _, record = j:acquire(key, NOW + i, LEASE, { key = key, event = "e", uid = "u", body = "", received_at = NOW + i }, false)
      j:update(key, record.token, { state = "failed", next_at = NOW + 100,
        errors = { { handler = "h" .. i .. ".lua", message = message } } }, NOW + i)
    end
    local cases = {
      { '"no" \\', { "k/1" } }, { "f\195\169", { "k/2" } }, { "a/b", { "k/3" } }, { "h4.lua", { "k/4" } },
      { "h", { "k/1", "k/2", "k/3", "k/4" } }, { "nowhere", {} },
    }
    for _, case in ipairs(cases) do
      local keys = {}
      for i, record in ipairs(j:find({ error = case[1], state = "failed" })) do
        keys[i] = record.key
      end
      assert.are.same(case[2], keys, case[1])
    end
  end)

  it("goes on after a cursor whose record left the index, among records received at the same time", function()
    for _, name in ipairs({ "a", "b", "c", "d", "e" }) do
      local key = "same/" .. name
      j:acquire(key, NOW, LEASE, { key = key, event = "e", uid = "u", body = "", received_at = NOW }, false)
    end
    local page, after = j:find({ limit = 2 })
    assert.are.same({ "same/a", "same/b" }, { page[1].key, page[2].key })
    assert.is_true(j:remove("same/b"))
    page, after = j:find({ limit = 2, after = after })
    assert.are.same({ "same/c", "same/d" }, { page[1].key, page[2].key })
    page, after = j:find({ limit = 2, after = after })
    assert.are.same({ "same/e" }, { page[1].key })
    assert.is_nil(after)
  end)

  it("leaves records written before the indexes out of find and counts, and takes them in when they change", function()
    -- a running record as the version without indexes wrote it: a hash and its due entry
    cli("hset", "t:d:" .. KEY, "key", KEY, "event", "guest_booked", "uid", "bk_1", "body", "{}", "state", "failed",
      "received_at", tostring(NOW), "attempts", "1", "next_at", tostring(NOW), "version", "2", "handlers", "{}",
      "errors", "[]", "token", "old")
    cli("zadd", "t:due", tostring(NOW), KEY)
    cli("hset", "t:d:old/done", "key", "old/done", "event", "guest_booked", "uid", "bk_1", "state", "done",
      "received_at", tostring(NOW), "attempts", "1", "version", "2", "handlers", "{}", "errors", "[]")
    assert.are.same({}, j:find({}))
    assert.are.same({ states = {}, events = {} }, j:counts())
    assert.are.equal("failed", j:get(KEY).state)
    assert.are.same({ KEY }, j:due(NOW, 10))
    assert.are.equal(1, #j:list("failed"))
    assert.are.equal(1, #j:list("all"))
    -- taken by an attempt, it joins the indexes as it is, then moves on with them
    local outcome, taken = j:acquire(KEY, NOW, LEASE, nil, false)
    assert.are.equal("taken", outcome)
    assert.are.same({ running = 1 }, j:counts().states)
    assert.are.equal(KEY, j:find({ uid = "bk_1" })[1].key)
    assert.is_true(j:update(KEY, taken.token, { state = "done", finished_at = NOW }, NOW))
    assert.are.same({ done = 1 }, j:counts().states)
    -- the old done one is removed as before, touching no count
    assert.is_true(j:remove("old/done"))
    assert.are.same({ done = 1 }, j:counts().states)
  end)

  it("acquires and updates in one round trip each", function()
    -- the first run of each script loads it (SCRIPT LOAD and EVAL, pipelined)
    local _, warm = j:acquire("warm/up/t", NOW, LEASE, new_delivery("warm/up/t"), false)
    j:update("warm/up/t", warm.token, { handlers = { a = true } }, NOW)
    local counter = count_round_trips(j.client)
    local evalsha, eval = calls("evalsha"), calls("eval")
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal(1, counter.sends)
    assert.is_true(j:update(KEY, record.token, { state = "done", finished_at = NOW }, NOW))
    assert.are.equal(2, counter.sends)
    assert.are.equal("done", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    assert.are.equal(3, counter.sends)
    assert.are.equal(evalsha + 3, calls("evalsha"))
    assert.are.equal(eval, calls("eval"))
  end)

  it("loads its scripts again when the server lost them", function()
    local _, record = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.are.equal("OK", cli("script", "flush"))
    assert.are.equal("busy", (j:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    assert.are.equal("OK", cli("script", "flush"))
    assert.is_true(j:update(KEY, record.token, { state = "dead", finished_at = NOW }, NOW))
    assert.are.equal("dead", j:get(KEY).state)
  end)

  it("fails, naming the server, while Redis is down, and works again once it is back", function()
    local own_dir = temp_dir()
    local own = assert(servers.redis(own_dir))
    local ok, err = pcall(function()
      local down = journal.redis({ port = own.port, connect_timeout = 500, read_timeout = 500 })
      local _, record = down:acquire(KEY, NOW, LEASE, new_delivery(), false)
      own:stop()
      local address = "127.0.0.1:" .. own.port
      local outcome, why = down:acquire(KEY, NOW, LEASE, new_delivery(), false)
      assert.is_nil(outcome)
      assert.truthy(why:find(address, 1, true), why)
      for _, call in ipairs({
        function() return down:update(KEY, record.token, { state = "done" }, NOW) end,
        function() return down:due(NOW, 10) end,
        function() return down:get(KEY) end,
        function() return down:list("all") end,
        function() return down:rearm(KEY, NOW) end,
        function() return down:remove(KEY) end,
      }) do
        local result, message = call()
        assert.is_nil(result)
        assert.truthy(message:find(address, 1, true), message)
        assert.truthy(message:find("refused", 1, true), message)
      end
      assert(own:start())
      assert.are.equal("new", (down:acquire(KEY, NOW, LEASE, new_delivery(), false)))
    end)
    own:stop()
    remove_dir(own_dir)
    assert(ok, err)
  end)

  it("fails, naming the server, on an error reply", function()
    cli("set", "t:due", "not a sorted set")
    local keys, err = j:due(NOW, 10)
    assert.is_nil(keys)
    assert.truthy(err:find("redis 127.0.0.1:" .. server.port .. ": WRONGTYPE", 1, true), err)
  end)

  it("reports a hash that is not a record instead of guessing", function()
    cli("hset", "t:d:" .. KEY, "state", "running", "key", KEY)   -- no lease_until
    cli("zadd", "t:due", "0", KEY)
    local outcome, err = j:acquire(KEY, NOW, LEASE, new_delivery(), false)
    assert.is_nil(outcome)
    assert.truthy(err:find("corrupt record t:d:" .. KEY, 1, true), err)
    cli("hset", "t:d:" .. KEY, "lease_until", "soon")
    local got, get_err = j:get(KEY)
    assert.is_nil(got)
    assert.truthy(get_err:find("lease_until is not a number", 1, true), get_err)
    local listed = j:list("running")
    assert.are.equal("corrupt", listed[1].state)
    assert.are.equal("t:d:" .. KEY, listed[1].file)
  end)

  it("forgets a key whose record is gone from the sets", function()
    cli("zadd", "t:due", "0", KEY)
    assert.are.same({ KEY }, (j:due(NOW, 10)))
    assert.are.equal("absent", (j:acquire(KEY, NOW, LEASE, nil, false)))
    assert.are.same({}, (j:due(NOW, 10)))
  end)

  it("lists done records from their events' sets, under a prefix holding glob characters", function()
    local odd = journal.redis({ port = server.port, prefix = "x*[?]:" })
    for i = 1, 3 do
      local key = "k/" .. i .. "/t"
      local _, record = odd:acquire(key, NOW, LEASE, new_delivery(key), false)
      odd:update(key, record.token, { state = "done", finished_at = NOW }, NOW)
    end
    j:acquire(KEY, NOW, LEASE, new_delivery(), false)   -- another prefix: not listed
    local listed = odd:list("done")
    assert.are.equal(3, #listed)
    assert.are.equal("k/1/t", listed[1].key)
    assert.are.equal(3, #odd:list("all"))
    assert.are.equal(1, #j:list("all"))
  end)

  it("raises on options it does not know", function()
    assert.has_error(function() journal.redis({ hots = "x" }) end)
    assert.has_error(function() journal.redis({ port = "6379" }) end)
    assert.has_error(function() journal.redis({ ttl = 0 }) end)
    assert.has_error(function() journal.redis({ prefix = 1 }) end)
    local ok, err = pcall(journal.redis, { hots = "x" })
    assert.is_false(ok)
    assert.truthy(err:find("journal.redis: unknown option 'hots'", 1, true), err)
  end)

  it("gives up on a server that does not answer after read_timeout", function()
    local listener = assert(socket.bind("127.0.0.1", 0))
    local _, port = listener:getsockname()
    local slow = journal.redis({ port = tonumber(port), read_timeout = 200 })
    local started = socket.gettime()
    local outcome, err = slow:acquire(KEY, NOW, LEASE, new_delivery(), false)
    listener:close()
    assert.is_nil(outcome)
    assert.truthy(err:find("127.0.0.1:" .. port .. ": read: timeout", 1, true), err)
    assert.truthy(socket.gettime() - started < 2)
  end)
end)
