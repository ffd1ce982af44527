-- Nothing answered 2xx is lost, tried for real: the example receiver in a real nginx (two
-- workers, the SQLite journal reached through nginx's thread pool) with handlers the spec steers
-- through files (spec/durability_handlers), workers and nginx itself killed with kill -9, a full
-- disk, the journal's lock held by another process, scripts broken and fixed under
-- `nginx -s reload`, and the jicoo-webhook command reading and retrying the journal. Deliveries are signed by the openssl
-- command line and sent by curl. Runs as the ctest integration-durability (JICOO_INTEGRATION=1).
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("durability", function()
    pending("runs as the ctest integration-durability (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"
local runner = require "cli_runner"

local SECRET = "whsec_durability_spec"
local HANDLERS = servers.spec_dir .. "/durability_handlers"
local TEMPLATE = support.read(support.fixtures .. "/valid/tokyo_no_utm_compact.json"):gsub("%s+$", "")
local CREATED_AT = "2024-03-01T10:00:05+09:00"

local missing = servers.missing(false)
if #missing > 0 then
  describe("durability", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local wait_for, counts = servers.wait_for, servers.counts

describe("durability: the journal in nginx", function()
  local dir
  local started = {}

  setup(function()
    dir = servers.temp_dir()
  end)

  teardown(function()
    for _, server in ipairs(started) do
      server:stop()
    end
    servers.remove_dir(dir)
  end)

  -- An nginx of its own for one case: its output folder (the handlers' logs and steering files),
  -- its journal folder, its handler folder.
  local function start(name, env, handlers, workers)
    local output = dir .. "/" .. name .. "-out"
    local journal = dir .. "/" .. name .. "-journal"
    assert(support.run("mkdir -p " .. support.quote(output)))
    local full_env = {
      JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = handlers or HANDLERS,
      JICOO_OUTPUT_DIR = output,
      JICOO_JOURNAL_DIR = journal,
      JICOO_RETRY_DELAYS = "1,1",
      JICOO_LEASE = "4",
    }
    for k, v in pairs(env or {}) do
      full_env[k] = v
    end
    local server, log = servers.nginx_server(dir, name, function(port)
      return servers.config(port, { workers = workers or 2, server = {
        "    location = /ping { return 200 'pong'; }" } })
    end, full_env)
    assert(server, "nginx did not start:\n" .. tostring(log))
    server.output, server.journal = output, journal
    started[#started + 1] = server
    return server
  end

  -- A delivery of its own (the Tokyo fixture under another uid) in a file, and its key.
  local function delivery(uid)
    local path = dir .. "/" .. uid .. ".json"
    support.write(path, (TEMPLATE:gsub('"uid":"bk_7Hq2"', '"uid":"' .. uid .. '"')))
    return path, "guest_booked/" .. uid .. "/" .. CREATED_AT
  end

  local function post(server, path)
    return servers.post(server:url(), path,
      { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, os.time(), path) })
  end

  local function steer(server, name, value)
    support.write(server.output .. "/" .. name, value)
  end

  -- Waits up to `seconds` until the output log `name` of server counts every one of keys
  -- (exactly `times` each, when given).
  local function all_counted(server, name, keys, seconds, times)
    return wait_for(function()
      local seen = counts(server.output .. "/" .. name)
      for _, key in ipairs(keys) do
        if seen[key] == nil or (times and seen[key] ~= times) then
          return false
        end
      end
      return true
    end, seconds)
  end

  local function deliveries(args, server)
    return runner.run("deliveries " .. args .. " --journal " .. support.quote(server.journal))
  end

  -- One delivery, its second handler asleep when its worker gets kill -9: the respawned or the
  -- other worker takes it over once the lease runs out.
  local function killed_mid_handler(server, uid)
    steer(server, "sleep", "3")
    local path, key = delivery(uid)
    -- Sent in the background: the answer never comes, the worker dies first.
    support.run("(curl -s -o /dev/null --max-time 10 -H 'Content-Type: application/json' -H "
      .. support.quote("Jicoo-Webhook-Signature: " .. servers.sign(SECRET, os.time(), path))
      .. " --data-binary @" .. support.quote(path) .. " " .. support.quote(server:url())
      .. " >/dev/null 2>&1 &)")
    assert.is_true(wait_for(function() return counts(server.output .. "/attempts.log")[key] == 1 end, 5))
    local pid = support.read(server.output .. "/attempts.log"):match("\t(%d+)")
    assert(support.run("kill -9 " .. pid))

    assert.is_true(wait_for(function() return counts(server.output .. "/booked.log")[key] == 1 end, 15),
      server:log())
    assert.are.equal(1, counts(server.output .. "/any.log")[key])
    assert.are.equal(2, counts(server.output .. "/attempts.log")[key])
    assert.truthy(server:log():find("worker process " .. pid .. " exited on signal 9", 1, true))
    return key
  end

  it("finishes a delivery whose worker was killed mid-handler, without a new request, and does"
      .. " not run again the handler that had succeeded", function()
    local server = start("kill")
    local key = killed_mid_handler(server, "kill1")
    local code, out = deliveries("list --state done", server)
    assert.are.equal(0, code)
    assert.truthy(out:find("done " .. key .. " attempts=2", 1, true), out)
  end)

  it("does the same with the Redis journal", function()
    if not (servers.redis_server and servers.redis_cli) then
      pending("needs redis-server")
      return
    end
    local redis = assert(servers.redis(dir))
    local ok, err = pcall(function()
      local server = start("kill-redis", { JICOO_REDIS = "127.0.0.1:" .. redis.port })
      local key = killed_mid_handler(server, "kill2")
      local code, out = runner.run("deliveries list --state done --redis 127.0.0.1:" .. redis.port)
      assert.are.equal(0, code, out)
      assert.truthy(out:find("done " .. key .. " attempts=2", 1, true), out)
    end)
    redis:stop()
    assert(ok, err)
  end)

  it("retries a handler that fails twice, then succeeds, and runs the other once", function()
    local server = start("retry")
    steer(server, "fail_times", "2")
    local path, key = delivery("retry1")
    local status, body = post(server, path)
    assert.are.equal("500", status, body)
    assert.are.equal("handler_failed", cjson.decode(body).error)
    assert.is_true(wait_for(function() return counts(server.output .. "/booked.log")[key] == 1 end, 15),
      server:log())
    assert.are.equal(3, counts(server.output .. "/attempts.log")[key])
    assert.are.equal(1, counts(server.output .. "/any.log")[key])
    status, body = post(server, path)
    assert.are.equal("200", status)
    assert.are.equal("duplicate", cjson.decode(body).result)
  end)

  it("keeps a delivery that always fails as a dead letter the command line shows, and retries"
      .. " it once fixed", function()
    local server = start("dead")
    steer(server, "fail", "")
    local path, key = delivery("dead1")
    assert.are.equal("500", (post(server, path)))
    -- Three attempts (JICOO_RETRY_DELAYS has two), then dead.
    assert.is_true(wait_for(function()
      local _, out = deliveries("list --state dead", server)
      return out:find("dead " .. key, 1, true) ~= nil
    end, 15), server:log())
    assert.are.equal(3, counts(server.output .. "/attempts.log")[key])
    local code, out = deliveries("show " .. support.quote(key), server)
    assert.are.equal(0, code)
    assert.truthy(out:find("state:        dead", 1, true), out)
    assert.truthy(out:find("told to fail (attempt 3)", 1, true), out)
    assert.truthy(out:find('"uid":"dead1"', 1, true), out)   -- the body
    local dead_lines = 0
    for _, line in ipairs(server:error_lines()) do
      if line:find("dead letter " .. key, 1, true) then
        dead_lines = dead_lines + 1
      end
    end
    assert.are.equal(1, dead_lines)

    os.remove(server.output .. "/fail")   -- the fix
    code, out = deliveries("retry " .. support.quote(key), server)
    assert.are.equal(0, code, out)
    assert.is_true(wait_for(function() return counts(server.output .. "/booked.log")[key] == 1 end, 10),
      server:log())
    assert.are.equal(1, counts(server.output .. "/any.log")[key])
    assert.are.equal(4, counts(server.output .. "/attempts.log")[key])
    code = deliveries("retry nosuch/key/t", server)
    assert.are.equal(1, code)
  end)

  it("completes the deliveries a broken script received once it is fixed and nginx reloaded", function()
    local handlers = dir .. "/broken-handlers"
    assert(support.run("mkdir -p " .. support.quote(handlers) .. " && cp " .. support.quote(HANDLERS
      .. "/any.lua") .. " " .. support.quote(handlers)))
    support.write(handlers .. "/guest_booked.lua", "return function( end\n")
    local server = start("broken", nil, handlers)
    assert.truthy(server:log():find("broken script " .. handlers .. "/guest_booked.lua", 1, true))
    local keys = {}
    for i = 1, 3 do
      local path, key = delivery("broken" .. i)
      keys[i] = key
      assert.are.equal("500", (post(server, path)))
    end
    support.run("cp " .. support.quote(HANDLERS .. "/guest_booked.lua") .. " " .. support.quote(handlers))
    assert(support.run("kill -HUP " .. server.pid))
    assert.is_true(all_counted(server, "booked.log", keys, 15, 1), server:log())
    for _, key in ipairs(keys) do
      assert.are.equal(1, counts(server.output .. "/any.log")[key])
    end
  end)

  it("answers first, then retries a failing handler instead of losing it", function()
    local server = start("first", { JICOO_ANSWER_FIRST = "1" })
    steer(server, "fail_times", "1")
    local path, key = delivery("first1")
    local status, body = post(server, path)
    assert.are.equal("200", status)
    assert.are.equal("accepted", cjson.decode(body).result)
    assert.is_true(wait_for(function() return counts(server.output .. "/booked.log")[key] == 1 end, 10),
      server:log())
    assert.are.equal(1, counts(server.output .. "/any.log")[key])
    assert.are.equal(2, counts(server.output .. "/attempts.log")[key])
  end)

  it("answers 500, never 200, when the journal's folder cannot be written, naming it once", function()
    support.write(dir .. "/not-a-folder", "")
    local server = start("unwritable", { JICOO_JOURNAL_DIR = dir .. "/not-a-folder/journal" })
    local path, key = delivery("unwritable1")
    for _ = 1, 2 do
      local status, body = post(server, path)
      assert.are.equal("500", status, body)
      assert.are.equal("store_failed", cjson.decode(body).error)
    end
    assert.is_nil(counts(server.output .. "/any.log")[key])
    local causes = 0
    for _, line in ipairs(server:error_lines()) do
      if line:find("answered 500: stage=store", 1, true) then
        causes = causes + 1
        assert.truthy(line:find(dir .. "/not-a-folder/journal", 1, true), line)
        assert.truthy(line:find("Not a directory", 1, true), line)
      end
    end
    assert.are.equal(2, causes)   -- one line per answer
  end)

  it("answers 500 naming the file when the journal's database is not one, and keeps serving", function()
    -- A journal.db that is not SQLite's, where the receiver's journal is.
    local journal_dir = dir .. "/corrupt-journal"
    assert(support.run("mkdir -p -m 700 " .. support.quote(journal_dir)))
    support.write(journal_dir .. "/journal.db", string.rep("not a database\n", 1000))
    assert(support.run("chmod 600 " .. support.quote(journal_dir .. "/journal.db")))
    local server = start("corrupt")
    local status, body = post(server, delivery("corrupt2"))
    assert.are.equal("500", status, body)
    assert.truthy(server:log():find(server.journal .. "/journal.db", 1, true), server:log())
    assert.are.equal("200", servers.get(server:url("/ping")))
    local code, _, err = deliveries("list", server)
    assert.are.equal(1, code)
    assert.truthy(err:find("journal.db", 1, true), err)
    for _, line in ipairs(server:error_lines()) do
      assert.is_nil(line:find("exited on signal", 1, true), line)
    end
  end)

  -- The journal's syncs failing (fdatasync and fsync answer EIO through spec/fail_sync.c, loaded
  -- with LD_PRELOAD, while a flag file exists): a delivery whose record is committed but not on
  -- disk is never answered 200. Once the disk syncs again the sender's retries are answered, and
  -- each delivery is handled once (the records written meanwhile are taken over by the lease).
  it("never answers 200 for a delivery whose record could not be synced to the disk", function()
    local shim = dir .. "/fail_sync.so"
    local out, built = support.run("cc -shared -fPIC -o " .. support.quote(shim) .. " "
      .. support.quote(servers.spec_dir .. "/fail_sync.c") .. " -ldl 2>&1")
    assert(built, "cannot build the sync-failing library: " .. tostring(out))
    local flag = dir .. "/fail-syncs"
    local server = start("unsynced", { LD_PRELOAD = shim, JICOO_TEST_FAIL_SYNC = flag }, nil, 1)
    local first, first_key = delivery("unsynced0")
    assert.are.equal("200", (post(server, first)))
    support.write(flag, "")
    local refused = {}
    for i = 1, 4 do
      local path = delivery("unsynced" .. i)
      local status, body = post(server, path)
      assert.are.equal("500", status, body)
      assert.are.equal("store_failed", cjson.decode(body).error)
      refused[i] = path
    end
    assert.truthy(server:log():find("cannot sync the journal's WAL", 1, true), server:log())
    os.remove(flag)
    for _, path in ipairs(refused) do   -- the sender's retries
      local status, body = post(server, path)
      assert.are.equal("200", status, body)
    end
    local keys = { first_key }
    for i = 1, 4 do
      keys[#keys + 1] = select(2, delivery("unsynced" .. i))
    end
    assert.is_true(all_counted(server, "booked.log", keys, 15), server:log())
    local booked = counts(server.output .. "/booked.log")
    for _, key in ipairs(keys) do
      assert.are.equal(1, booked[key], key)
    end
  end)

  -- Answered first, its handlers asleep when nginx, master and workers, is killed with kill -9:
  -- started again on the same journal, every delivery answered 200 is handled, once.
  it("handles every delivery it answered 200 after nginx itself was killed with kill -9", function()
    local env = { JICOO_ANSWER_FIRST = "1" }
    local server = start("crash", env)
    steer(server, "sleep", "30")
    local keys = {}
    for i = 1, 8 do
      local path, key = delivery("crash" .. i)
      local status, body = post(server, path)
      assert.are.equal("200", status, body)
      assert.are.equal("accepted", cjson.decode(body).result)
      keys[i] = key
    end
    assert.is_true(all_counted(server, "attempts.log", keys, 10, 1), server:log())
    -- stopped first, so that the master cannot start a worker in the place of one killed
    support.run("kill -STOP " .. server.pid .. "; pkill -KILL -P " .. server.pid .. "; kill -KILL "
      .. server.pid)
    assert.is_true(wait_for(function() return not servers.is_alive(server.pid) end, 5))
    os.remove(server.output .. "/sleep")
    local again = start("crash", env)   -- the same journal and output folders
    assert.is_true(all_counted(again, "booked.log", keys, 20, 1), again:log())
    local any = counts(again.output .. "/any.log")
    for _, key in ipairs(keys) do
      assert.are.equal(1, any[key], key)   -- it had succeeded before the crash: not run again
    end
    local _, booked_lines = counts(again.output .. "/booked.log")
    assert.are.equal(#keys, booked_lines)
  end)

  -- A real full disk: the journal on an 8 MiB tmpfs (root can mount one; elsewhere pending).
  -- A delivery whose handlers ran but whose outcome could not be written (the log says so) runs
  -- again once its lease is out: that is the one case of a handler running twice here.
  it("never answers 200 for a delivery it could not journal on a full disk, and takes it once"
      .. " there is room", function()
    local mount = dir .. "/small"
    assert(support.run("mkdir -p " .. support.quote(mount)))
    local _, mounted = support.run("mount -t tmpfs -o size=8m tmpfs " .. support.quote(mount)
      .. " 2>/dev/null")
    if not mounted then
      pending("cannot mount a tmpfs here (needs root)")
      return
    end
    local server
    local ok, err = pcall(function()
      server = start("full", { JICOO_JOURNAL_DIR = mount .. "/journal" })
      assert.are.equal("200", (post(server, delivery("full0"))))
      support.run("dd if=/dev/zero of=" .. support.quote(mount .. "/filler") .. " bs=4k 2>/dev/null")
      local answered, refused = {}, {}
      for i = 1, 40 do
        local path, key = delivery("full" .. i)
        local status = post(server, path)
        if status == "200" then
          answered[#answered + 1] = key
        else
          assert.truthy(status == "500" or status == "503", status)
          refused[#refused + 1] = path
        end
      end
      assert.truthy(#refused > 0, "the full disk refused nothing")
      os.remove(mount .. "/filler")
      for _, path in ipairs(refused) do   -- the sender's retries
        local status, body = post(server, path)
        assert.are.equal("200", status, body .. server:log())
      end
      local unrecorded = {}
      for key in server:log():gmatch("cannot record how (%S+) went") do
        unrecorded[key] = true
      end
      local keys = {}
      for _, key in ipairs(answered) do
        keys[#keys + 1] = key
      end
      for _, path in ipairs(refused) do
        keys[#keys + 1] = select(2, delivery(path:match("([^/]+)%.json$")))
      end
      assert.is_true(all_counted(server, "booked.log", keys, 15), server:log())
      local booked = counts(server.output .. "/booked.log")
      for _, key in ipairs(keys) do
        assert.truthy(booked[key] == 1 or (unrecorded[key] and booked[key] == 2), key)
      end
    end)
    if server then
      server:stop()   -- its workers hold the database open: the mount would stay busy
    end
    servers.unmount(mount)
    assert(ok, err)
  end)

  -- The lock on the database held by another process for 4 s: a delivery on the worker waits
  -- in nginx's thread pool, and the worker answers another location meanwhile.
  it("answers other requests on the same worker while a delivery waits for the journal", function()
    local server = start("locked", nil, nil, 1)
    assert.are.equal("200", (post(server, delivery("locked0"))))   -- the database is there
    local holder = dir .. "/hold.lua"
    support.write(holder, "local db = assert(require('jicoo.webhook.sqlite3').open(arg[1]))\n"
      .. "assert(db:exec('BEGIN IMMEDIATE'))\nio.open(arg[2], 'w'):close()\n"
      .. "os.execute('sleep 4')\ndb:exec('ROLLBACK')\n")
    local held = dir .. "/held"
    support.run("(luajit " .. support.quote(holder) .. " " .. support.quote(server.journal
      .. "/journal.db") .. " " .. support.quote(held) .. " >/dev/null 2>&1 &)")
    assert.is_true(wait_for(function() return io.open(held) ~= nil end, 5))
    local path = delivery("locked1")
    local answer_file = dir .. "/locked1.answer"
    support.run("(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 15 -H "
      .. "'Content-Type: application/json' -H " .. support.quote("Jicoo-Webhook-Signature: "
      .. servers.sign(SECRET, os.time(), path)) .. " --data-binary @" .. support.quote(path)
      .. " " .. support.quote(server:url()) .. " > " .. support.quote(answer_file) .. " &)")
    servers.sleep(0.3)
    local slowest = 0
    for _ = 1, 10 do
      local out = support.run("curl -s -o /dev/null -w '%{time_total}' --max-time 5 "
        .. support.quote(server:url("/ping")))
      slowest = math.max(slowest, tonumber(out) or 99)
      servers.sleep(0.1)
    end
    assert.truthy(wait_for(function()
      local file = io.open(answer_file)
      local text = file and file:read("*a") or ""
      if file then file:close() end
      return text:match("^%d%d%d ")
    end, 15))
    local status, took = support.read(answer_file):match("^(%d+) ([%d.]+)")
    assert.truthy(tonumber(took) >= 1.5, "the delivery did not wait for the lock: " .. took)
    assert.truthy(slowest < 0.5, "a ping took " .. slowest .. " s while the delivery waited")
    assert.truthy(status == "500" or status == "200", status)
    if status == "500" then   -- the lock outlasted busy_timeout: the sender's retry is taken
      assert.are.equal("200", (post(server, path)))
    end
    assert.is_true(wait_for(function()
      return counts(server.output .. "/booked.log")[select(2, delivery("locked1"))] == 1
    end, 10))
  end)
end)
