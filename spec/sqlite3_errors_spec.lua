-- jicoo.webhook.sqlite3 when things go wrong: misuse that raises (and leaves the statement
-- usable), closed databases and finalized statements, the locks close releases and what the GC
-- closes, and each failure's code made for real: busy (two connections), full (a page limit),
-- corrupt (garbage), cantopen, readonly and perm.
local sqlite3 = require "jicoo.webhook.sqlite3"
local support = require "support"
local runner = require "cli_runner"
local shared = require "sqlite3_shared"

local q = support.quote
local IS_ROOT, new_path = shared.IS_ROOT, shared.new_path
local exists, sh, new_db = shared.exists, shared.sh, shared.new_db

-- Wall-clock milliseconds (os.clock counts CPU time, which a busy wait does not spend).
local function now_ms()
  return math.floor(tonumber((support.run("date +%s%N"))) / 1e6)
end

local dir

describe("jicoo.webhook.sqlite3", function()
  setup(function()
    dir = shared.make_dir()
  end)

  teardown(function()
    shared.remove_dir()
  end)

  describe("misuse", function()
    local db, stmt
    before_each(function()
      db = new_db()
      assert(db:exec("CREATE TABLE t(a, b)"))
      stmt = assert(db:prepare("INSERT INTO t VALUES (?1, ?2)"))
    end)
    after_each(function()
      db:close()
    end)

    -- name, the call (given a fresh path), the message it raises (a plain substring).
    local cases = {
      { "open without a path", function() sqlite3.open() end, "bad argument #1 to 'open'" },
      { "open of an empty path", function() sqlite3.open("") end, "bad argument #1 to 'open'" },
      { "open of a path with NUL", function(p) sqlite3.open(p .. "\0x", { create = true }) end,
        "without NUL bytes" },
      { "open with options not a table", function(p) sqlite3.open(p, "create") end,
        "bad argument #2 to 'open'" },
      { "an unknown option", function(p) sqlite3.open(p, { create = true, bogus = 1 }) end,
        "sqlite3.open: unknown option 'bogus' (it takes busy_timeout, create, mode, readonly)" },
      { "an option name not a string", function(p) sqlite3.open(p, { true }) end,
        "option names must be strings" },
      { "create not a boolean", function(p) sqlite3.open(p, { create = "yes" }) end,
        "option 'create' must be a boolean" },
      { "readonly not a boolean", function(p) sqlite3.open(p, { readonly = 1 }) end,
        "option 'readonly' must be a boolean" },
      { "mode past 0777", function(p) sqlite3.open(p, { create = true, mode = 512 }) end,
        "option 'mode' must be a whole number from 0 to 511" },
      { "mode as a string", function(p) sqlite3.open(p, { create = true, mode = "0600" }) end,
        "option 'mode' must be" },
      { "mode with a fraction", function(p) sqlite3.open(p, { create = true, mode = 384.5 }) end,
        "option 'mode' must be" },
      { "a negative busy_timeout", function(p) sqlite3.open(p, { create = true, busy_timeout = -1 }) end,
        "option 'busy_timeout' must be a whole number of milliseconds" },
      { "create and readonly", function(p) sqlite3.open(p, { create = true, readonly = true }) end,
        "options 'create' and 'readonly' exclude each other" },
      { "exec of a table", function() db:exec({}) end, "bad argument #1 to 'exec'" },
      { "exec of SQL with NUL", function() db:exec("SELECT 1;\0DROP TABLE t") end, "SQL holds no NUL byte" },
      { "prepare of nothing", function() db:prepare("  ") end, "the SQL holds no statement" },
      { "prepare of a comment", function() db:prepare("-- nothing") end, "the SQL holds no statement" },
      { "prepare of two statements", function() db:prepare("SELECT 1; SELECT 2") end,
        "prepare takes one statement" },
      { "run with too few arguments", function() stmt:run(1) end,
        "the statement takes 2 arguments, got 1" },
      { "run with too many arguments", function() stmt:run(1, 2, 3) end,
        "the statement takes 2 arguments, got 3" },
      { "query with none", function() stmt:query() end, "the statement takes 2 arguments, got 0" },
      { "first with an argument too many", function() db:prepare("SELECT 1"):first(1) end,
        "the statement takes 0 arguments, got 1" },
      { "a table argument", function() stmt:run({}, 1) end,
        "bad argument #1 to 'run' (nil, boolean, number or string expected, got table)" },
      { "a function argument", function() stmt:first(1, print) end,
        "bad argument #2 to 'first' (nil, boolean, number or string expected, got function)" },
      { "a statement as the database", function() db.exec(stmt, "SELECT 1") end,
        "jicoo.webhook.SQLiteDatabase expected" },
      { "a database as the statement", function() stmt.run(db, 1, 2) end,
        "jicoo.webhook.SQLiteStatement expected" },
    }
    for _, case in ipairs(cases) do
      it("raises for " .. case[1], function()
        local path = new_path()
        local ok, err = pcall(case[2], path)
        assert.is_false(ok, case[1])
        assert.truthy(tostring(err):find(case[3], 1, true), err)
        assert.is_false(exists(path), "open raised after creating " .. path)
      end)
    end

    it("leaves a statement usable after raising", function()
      assert.is_false(pcall(stmt.run, stmt, 1))
      assert.is_false(pcall(stmt.run, stmt, {}, 1))
      assert.are.equal(1, stmt:run(1, 2))
      assert.are.same({ { a = 1, b = 2 } }, db:prepare("SELECT a, b FROM t"):query())
    end)
  end)

  describe("closing", function()
    it("raises for a closed database and its statements; close and finalize twice are safe", function()
      local db = new_db()
      assert(db:exec("CREATE TABLE t(a)"))
      local stmt = db:prepare("SELECT a FROM t")
      db:close()
      db:close()
      local calls = {
        { "exec", function() db:exec("SELECT 1") end, "the database is closed" },
        { "prepare", function() db:prepare("SELECT 1") end, "the database is closed" },
        { "changes", function() db:changes() end, "the database is closed" },
        { "last_insert_rowid", function() db:last_insert_rowid() end, "the database is closed" },
        { "run", function() stmt:run() end, "the statement's database is closed" },
        { "query", function() stmt:query() end, "the statement's database is closed" },
        { "first", function() stmt:first() end, "the statement's database is closed" },
      }
      for _, call in ipairs(calls) do
        local ok, err = pcall(call[2])
        assert.is_false(ok, call[1])
        assert.truthy(err:find(call[3], 1, true), err)
      end
      stmt:finalize()
      stmt:finalize()
    end)

    it("raises for a finalized statement; its database goes on", function()
      local db = new_db()
      local stmt = db:prepare("SELECT 1 AS one")
      stmt:finalize()
      stmt:finalize()
      for _, method in ipairs({ "run", "query", "first" }) do
        local ok, err = pcall(stmt[method], stmt)
        assert.is_false(ok, method)
        assert.truthy(err:find("the statement is finalized", 1, true), err)
      end
      assert.are.same({ one = 1 }, db:prepare("SELECT 1 AS one"):first())
      db:close()
    end)

    it("close releases the file's locks, with statements still prepared on it", function()
      local db, path = new_db()
      assert(db:exec("CREATE TABLE t(a)"))
      local stmts = { db:prepare("SELECT a FROM t"), db:prepare("INSERT INTO t VALUES (?)") }
      assert(db:exec("BEGIN IMMEDIATE"))
      db:close()
      local other = assert(sqlite3.open(path, { busy_timeout = 0 }))
      assert.is_true(other:exec("BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT"))
      other:close()
      assert.is_false(pcall(stmts[2].run, stmts[2], 1))
    end)

    it("lets the GC close a database no one holds, and keeps one a statement holds", function()
      local path = new_path()
      local stmt = (function()
        local db = assert(sqlite3.open(path, { create = true }))
        assert(db:exec("CREATE TABLE t(a); INSERT INTO t VALUES (7)"))
        return db:prepare("SELECT a FROM t")
      end)()
      collectgarbage()
      collectgarbage()
      assert.are.same({ a = 7 }, stmt:first()) -- the database is alive through its statement

      stmt = nil -- luacheck: ignore 311 (dropped, for the GC to find the database unheld)
      -- Opened in a function of its own, so that no register of this one still holds it.
      local function open_and_lock()
        local db = assert(sqlite3.open(path))
        assert(db:exec("BEGIN IMMEDIATE"))
      end
      open_and_lock()
      collectgarbage()
      collectgarbage()
      local other = assert(sqlite3.open(path, { busy_timeout = 0 }))
      assert.is_true(other:exec("BEGIN IMMEDIATE; COMMIT"))
      other:close()
    end)
  end)

  describe("failures", function()
    it("busy: a write while another connection holds BEGIN IMMEDIATE, after busy_timeout", function()
      local a, path = new_db()
      assert(a:exec("PRAGMA journal_mode=WAL; CREATE TABLE t(a)"))
      assert(a:exec("BEGIN IMMEDIATE"))
      local b = assert(sqlite3.open(path, { busy_timeout = 50 }))
      local insert = assert(b:prepare("INSERT INTO t VALUES (?)"))
      local start = now_ms()
      local ok, err, code = insert:run(1)
      local waited = now_ms() - start
      assert.is_nil(ok)
      assert.are.equal("database is locked", err)
      assert.are.equal("busy", code)
      assert.is_true(waited >= 40 and waited < 2000, "waited " .. waited .. " ms")
      ok, err, code = b:exec("BEGIN IMMEDIATE")
      assert.are.same({ nil, "database is locked", "busy" }, { ok, err, code })
      -- A longer busy_timeout waits longer.
      local c = assert(sqlite3.open(path, { busy_timeout = 400 }))
      start = now_ms()
      assert.are.equal("busy", select(3, c:exec("BEGIN IMMEDIATE")))
      waited = now_ms() - start
      assert.is_true(waited >= 350 and waited < 3000, "waited " .. waited .. " ms")
      c:close()
      -- Once the other commits, the same statement runs.
      assert(a:exec("COMMIT"))
      assert.are.equal(1, insert:run(1))
      a:close()
      b:close()
    end)

    it("busy: query and first while another connection holds BEGIN EXCLUSIVE", function()
      local a, path = new_db()
      assert(a:exec("CREATE TABLE t(a); INSERT INTO t VALUES (1)"))
      local b = assert(sqlite3.open(path, { busy_timeout = 10 }))
      local select = assert(b:prepare("SELECT a FROM t WHERE a >= ?"))
      assert(a:exec("BEGIN EXCLUSIVE"))
      -- A new connection cannot even read the schema to prepare.
      local c = assert(sqlite3.open(path, { busy_timeout = 10 }))
      assert.are.same({ nil, "database is locked", "busy" }, { c:prepare("SELECT a FROM t") })
      c:close()
      assert.are.same({ nil, "database is locked", "busy" }, { select:query(0) })
      assert.are.same({ nil, "database is locked", "busy" }, { select:first(0) })
      assert(a:exec("COMMIT"))
      assert.are.same({ { a = 1 } }, select:query(0))
      assert.are.same({ a = 1 }, select:first(0))
      a:close()
      b:close()
    end)

    it("busy at once with busy_timeout = 0", function()
      local a, path = new_db()
      assert(a:exec("CREATE TABLE t(a); BEGIN IMMEDIATE"))
      local b = assert(sqlite3.open(path, { busy_timeout = 0 }))
      local start = now_ms()
      assert.are.same({ nil, "database is locked", "busy" }, { b:exec("BEGIN IMMEDIATE") })
      assert.is_true(now_ms() - start < 1000)
      a:close()
      b:close()
    end)

    it("full: inserts past PRAGMA max_page_count", function()
      local db = new_db()
      assert(db:exec("CREATE TABLE t(a); PRAGMA max_page_count = 5"))
      local insert = db:prepare("INSERT INTO t VALUES (?)")
      local ok, err, code
      for _ = 1, 50 do
        ok, err, code = insert:run(string.rep("x", 3000))
        if not ok then
          break
        end
      end
      assert.are.same({ nil, "database or disk is full", "full" }, { ok, err, code })
      assert.are.equal(1, db:prepare("DELETE FROM t WHERE rowid = 1"):run())
      db:close()
    end)

    it("corrupt: a file of garbage is not a database", function()
      local path = new_path("garbage.db")
      support.write(path, string.rep("this is no database, only garbage bytes\n", 200))
      local db = assert(sqlite3.open(path))
      assert.are.same({ nil, "file is not a database", "corrupt" }, { db:exec("SELECT * FROM sqlite_master") })
      assert.are.same({ nil, "file is not a database", "corrupt" }, { db:prepare("SELECT * FROM sqlite_master") })
      db:close()
    end)

    it("cantopen: a missing file without create, or in a missing folder", function()
      local missing = new_path("missing.db")
      local cases = {
        { missing, nil, missing .. ": no such file (option 'create' is not set)" },
        { missing, { readonly = true }, missing .. ": no such file (option 'create' is not set)" },
        { dir .. "/no/such/folder.db", { create = true }, dir .. "/no/such/folder.db: cannot create: No such file or directory" },
      }
      for _, case in ipairs(cases) do
        assert.are.same({ nil, case[3], "cantopen" }, { sqlite3.open(case[1], case[2]) })
      end
      assert.is_false(exists(missing))
    end)

    it("readonly: a write through a connection opened readonly", function()
      local db, path = new_db()
      assert(db:exec("CREATE TABLE t(a)"))
      db:close()
      local reader = assert(sqlite3.open(path, { readonly = true }))
      assert.are.same({ nil, "attempt to write a readonly database", "readonly" },
        { reader:exec("INSERT INTO t VALUES (1)") })
      assert.are.same({}, reader:prepare("SELECT a FROM t"):query())
      reader:close()
    end)

    -- The file of the module this process loaded (package.searchpath is 5.2+).
    local function loaded_module()
      for entry in package.cpath:gmatch("[^;]+") do
        local file = entry:gsub("%?", "jicoo/webhook/sqlite3")
        if io.open(file) then
          return file
        end
      end
    end

    it("perm: a folder this process may not search", function()
      local path, out
      if IS_ROOT then
        -- Root searches every folder: the open runs as nobody, in a child process that loads a
        -- copy of the module from a folder anyone reads, against the spec's folder (0700, root's).
        local public = runner.temp_dir()
        sh("mkdir -p " .. q(public .. "/jicoo/webhook") .. " && cp " .. q(loaded_module()) .. " "
          .. q(public .. "/jicoo/webhook/") .. " && chmod -R a+rX " .. q(public))
        path = dir .. "/x.db"
        local code = string.format("local _, err, code = require('jicoo.webhook.sqlite3').open(%q, "
          .. "{ create = true }) io.write(tostring(err), '|', tostring(code))", path)
        out = support.run("cd / && runuser -u nobody -- env LUA_CPATH=" .. q(public .. "/?.so") .. " "
          .. q(runner.interpreter()) .. " -e " .. q(code) .. " 2>&1")
        runner.remove_dir(public)
      else
        local locked = new_path("locked")
        sh("mkdir " .. q(locked) .. " && chmod 000 " .. q(locked))
        path = locked .. "/x.db"
        local _, err, code = sqlite3.open(path, { create = true })
        out = tostring(err) .. "|" .. tostring(code)
        sh("chmod 700 " .. q(locked))
      end
      assert.are.equal(path .. ": Permission denied|perm", out)
    end)
  end)
end)
