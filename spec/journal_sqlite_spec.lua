-- What only the SQLite journal has: its files on a shared machine (0600 in a 0700 folder under
-- any umask; a link, a FIFO, a hard link, a folder that is a link or a database another user
-- owns refused, never followed), a folder it cannot make, its cap (max_open), its sweep of done
-- records, a scheduler's pass read through the due index and never waiting for a writer, two processes on one journal, and a
-- full disk (a 1 MiB tmpfs, where one can be mounted).
local journal = require "jicoo.webhook.journal"
local support = require "support"
local shared = require "journal_shared"

local NOW, LEASE, KEY = shared.NOW, shared.LEASE, shared.KEY
local new_delivery, temp_dir, remove_dir = shared.new_delivery, shared.temp_dir, shared.remove_dir

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

  it("answers a scheduler's pass and the operators' questions while another holds the write lock", function()
    local waiting = journal.sqlite({ dir = dir .. "/locked", busy_timeout = 50 })
    local _, record = waiting:acquire(KEY, NOW, LEASE, new_delivery(), false)
    waiting:update(KEY, record.token, { state = "failed", next_at = NOW + 5 }, NOW)
    local other = require("jicoo.webhook.sqlite3").open(dir .. "/locked/journal.db")
    assert(other:exec("BEGIN IMMEDIATE"))
    assert.are.same({ KEY }, (waiting:due(NOW + 10, 10)))   -- its sweep waits, and gives up
    assert.are.equal("failed", waiting:get(KEY).state)
    assert.are.equal(1, waiting:counts().states.failed)
    assert.are.equal(1, #waiting:list("all"))
    local outcome, err, code = waiting:acquire("b/1/t", NOW, LEASE, new_delivery("b/1/t"), false)
    assert.is_nil(outcome)
    assert.are.equal("busy", code, err)
    assert(other:exec("ROLLBACK"))
    other:close()
    assert.are.equal("new", (waiting:acquire("b/1/t", NOW, LEASE, new_delivery("b/1/t"), false)))
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

  -- A database version 1 made (before budget_from and rearmed_at): opening it adds the two
  -- columns, once, and keeps every record; the attempts of a retry then go on counting.
  local SCHEMA_1 = [[
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY,
  key TEXT UNIQUE NOT NULL,
  event TEXT NOT NULL,
  uid TEXT NOT NULL,
  state TEXT NOT NULL,
  received_at REAL NOT NULL,
  attempts INTEGER NOT NULL,
  handlers TEXT NOT NULL,
  errors TEXT NOT NULL,
  next_at REAL,
  lease_until REAL,
  token TEXT,
  finished_at REAL,
  expires_at REAL,
  version INTEGER NOT NULL,
  due_at REAL GENERATED ALWAYS AS
    (CASE state WHEN 'running' THEN lease_until WHEN 'failed' THEN next_at END) VIRTUAL
);
CREATE TABLE IF NOT EXISTS bodies (
  id INTEGER PRIMARY KEY,
  body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_uid ON deliveries (uid, received_at);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries (state, received_at, key);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries (event, received_at, key);
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_at, key);
CREATE INDEX IF NOT EXISTS deliveries_expiry ON deliveries (expires_at)
  WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS tally (
  state TEXT NOT NULL,
  event TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (state, event)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS tally_insert AFTER INSERT ON deliveries BEGIN
  INSERT INTO tally VALUES (NEW.state, NEW.event, 1)
    ON CONFLICT (state, event) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS tally_delete AFTER DELETE ON deliveries BEGIN
  UPDATE tally SET n = n - 1 WHERE state = OLD.state AND event = OLD.event;
END;
CREATE TRIGGER IF NOT EXISTS tally_update AFTER UPDATE OF state ON deliveries
  WHEN OLD.state <> NEW.state BEGIN
  UPDATE tally SET n = n - 1 WHERE state = OLD.state AND event = OLD.event;
  INSERT INTO tally VALUES (NEW.state, NEW.event, 1)
    ON CONFLICT (state, event) DO UPDATE SET n = n + 1;
END;
]]

  it("takes a database of schema version 1 to the current one, its records kept", function()
    local old_dir = dir .. "/v1"
    assert(support.run("mkdir -m 700 " .. support.quote(old_dir)))
    local sqlite3 = require "jicoo.webhook.sqlite3"
    local db = assert(sqlite3.open(old_dir .. "/journal.db", { create = true, mode = 384 }))
    assert(db:exec(SCHEMA_1 .. " PRAGMA user_version = 1;"))
    assert(db:exec("INSERT INTO deliveries (key, event, uid, state, received_at, attempts, handlers,"
      .. " errors, finished_at, version) VALUES ('" .. KEY .. "', 'guest_booked', 'bk_1', 'dead', "
      .. NOW .. ", 3, '{}', '[{\"handler\":\"b\",\"message\":\"down\"}]', " .. NOW .. ", 4);"
      .. " INSERT INTO bodies (id, body) VALUES (last_insert_rowid(), '{}');"))
    db:close()

    local upgraded = journal.sqlite({ dir = old_dir })
    local record = assert(upgraded:get(KEY))
    assert.are.equal("dead", record.state)
    assert.are.equal(3, record.attempts)
    assert.are.equal(0, record.budget_from)
    assert.are.equal("{}", record.body)
    assert.are.equal(1, upgraded:counts().states.dead)
    local rearmed = assert(upgraded:rearm(KEY, NOW + 10))
    assert.are.equal(3, rearmed.budget_from)
    local _, taken = upgraded:acquire(KEY, NOW + 10, LEASE, nil, false)
    assert.are.equal(4, taken.attempts)

    require("jicoo.webhook.journal.sqlite_db").disconnect(old_dir)
    db = assert(sqlite3.open(old_dir .. "/journal.db"))
    local version = assert(db:prepare("PRAGMA user_version"))
    assert.are.equal(require("jicoo.webhook.journal.sqlite_db").SCHEMA_VERSION,
      version:first().user_version)
    version:finalize()
    local columns = assert(db:prepare("SELECT name FROM pragma_table_xinfo('deliveries')"))
    local names = {}
    for _, row in ipairs(assert(columns:query())) do
      names[row.name] = true
    end
    columns:finalize()
    db:close()
    assert.is_true(names.budget_from)
    assert.is_true(names.rearmed_at)
    -- opened again: nothing more to do
    assert.are.equal(3, journal.sqlite({ dir = old_dir }):get(KEY).budget_from)
  end)

  it("refuses a database a newer version made", function()
    local new_dir = dir .. "/v99"
    assert(support.run("mkdir -m 700 " .. support.quote(new_dir)))
    local sqlite3 = require "jicoo.webhook.sqlite3"
    local db = assert(sqlite3.open(new_dir .. "/journal.db", { create = true, mode = 384 }))
    assert(db:exec("PRAGMA user_version = 99"))
    db:close()
    local record, err = journal.sqlite({ dir = new_dir }):get(KEY)
    assert.is_nil(record)
    assert.truthy(err:find("made by a newer jicoo-webhook (schema 99)", 1, true), err)
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
