-- What only the Redis journal has, against a real redis-server on 127.0.0.1 (pending without
-- LuaSocket or redis-server): how it keeps a record there (a hash; the keys due and dead in
-- sorted sets; the indexes find reads and the counters counts reads, kept with each change), its
-- sweep of done records, the round trips find, counts, acquire and update cost, records written
-- before the indexes, lost scripts, a prefix holding glob characters, its options, and a server
-- that is down, slow, or answers an error or a hash that is not a record.
local journal = require "jicoo.webhook.journal"
local support = require "support"
local shared = require "journal_shared"

local NOW, LEASE, KEY = shared.NOW, shared.LEASE, shared.KEY
local new_delivery, temp_dir, remove_dir = shared.new_delivery, shared.temp_dir, shared.remove_dir

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
    assert.truthy(listed[1].message:find("lease_until is not a number", 1, true), listed[1].message)
  end)

  it("is listed by jicoo-webhook deliveries as corrupt HASH: why when a hash is not a record", function()
    local runner = require "cli_runner"
    cli("hset", "jicoo-webhook:d:" .. KEY, "state", "running", "key", KEY, "lease_until", "soon")
    cli("zadd", "jicoo-webhook:s:running", "0", KEY)
    local code, out, err = runner.run("deliveries list --redis 127.0.0.1:" .. server.port)
    assert.are.equal(0, code, err)
    assert.are.equal("corrupt jicoo-webhook:d:" .. KEY .. ": corrupt record jicoo-webhook:d:" .. KEY
      .. ": lease_until is not a number\n1 delivery: 1 corrupt\n", out)
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
