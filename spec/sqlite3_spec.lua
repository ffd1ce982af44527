-- jicoo.webhook.sqlite3, the SQLite binding under the journal's database: values of every type
-- there and back (and as the sqlite3 command, another reader and writer, sees them), run, query
-- and first, misuse that raises, each failure's code made for real (two connections for busy, a
-- page limit for full, garbage for corrupt), the file checks of open (links, FIFOs, other
-- owners), the modes of the files it and SQLite create under any umask, and WAL mode.
local sqlite3 = require "jicoo.webhook.sqlite3"
local support = require "support"
local runner = require "cli_runner"

local q = support.quote
local unpack = table.unpack or unpack
local HAS_INTEGERS = math.type ~= nil
local IS_ROOT = support.run("id -u") == "0\n"
local HAS_CLI = select(2, support.run("command -v sqlite3 >/dev/null"))

local dir
local count = 0

-- A fresh name in the spec's folder.
local function new_path(name)
  count = count + 1
  return dir .. "/" .. count .. "-" .. (name or "test.db")
end

local function exists(path)
  return select(2, support.run("test -e " .. q(path) .. " || test -L " .. q(path)))
end

local function mode_of(path)
  return (assert(support.run("stat -c %a " .. q(path))):gsub("%s+$", ""))
end

local function sh(command)
  local out, ok = support.run(command .. " 2>&1")
  assert(ok, command .. ": " .. out)
  return out
end

-- Wall-clock milliseconds (os.clock counts CPU time, which a busy wait does not spend).
local function now_ms()
  return math.floor(tonumber((support.run("date +%s%N"))) / 1e6)
end

-- This process's C search path with its relative entries made absolute (a bare busted run
-- names build/<runtime>/?.so), for a child that runs in another folder.
local function absolute_cpath()
  local cwd = (assert(support.run("pwd")):gsub("%s+$", ""))
  return (package.cpath:gsub("[^;]+", function(entry)
    if entry:sub(1, 1) ~= "/" then
      return cwd .. "/" .. entry
    end
  end))
end

-- A new database with create = true and the options given.
local function new_db(options, name)
  local opts = { create = true }
  for k, v in pairs(options or {}) do
    opts[k] = v
  end
  local path = new_path(name)
  return assert(sqlite3.open(path, opts)), path
end

-- Equal, and on 5.3+ of the same subtype (an integer is not a float that looks like one).
local function assert_same_value(expected, got, name)
  assert.are.equal(expected, got, name)
  if HAS_INTEGERS and type(expected) == "number" then
    assert.are.equal(math.type(expected), math.type(got), name .. ": integer or float")
  end
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02X", c:byte()) end))
end

local function all_bytes()
  local bytes = {}
  for i = 0, 255 do
    bytes[#bytes + 1] = string.char(i)
  end
  return table.concat(bytes)
end

describe("jicoo.webhook.sqlite3", function()
  setup(function()
    dir = (assert(support.run("mktemp -d /tmp/jicoo-sqlite3.XXXXXX")):gsub("%s+$", ""))
  end)

  teardown(function()
    if dir and dir:match("^/tmp/jicoo%-sqlite3%.") then
      support.run("chmod -R u+rwx " .. q(dir) .. "; rm -rf " .. q(dir))
    end
  end)

  it("names the library's version", function()
    local db = new_db()
    assert.matches("^%d+%.%d+%.%d+$", sqlite3.version)
    assert.are.equal(db:prepare("SELECT sqlite_version() AS v"):first().v, sqlite3.version)
    db:close()
  end)

  it("syncs the WAL on its own, after a commit that did not (synchronous = NORMAL)", function()
    local db = new_db()
    assert(db:exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE w(a);"
      .. " INSERT INTO w VALUES (1)"))
    assert.is_true(db:sync_wal())
    db:close()
    assert.has_error(function() db:sync_wal() end, "sqlite3: the database is closed")
  end)

  describe("values", function()
    -- name, value, SQLite's type for it, what comes back (the value itself when absent), and
    -- what the sqlite3 command prints for it (typeof|quote, or typeof|hex for text).
    local cases = {
      { "zero", 0, "integer", nil, "integer|0" },
      { "a negative integer", -42, "integer", nil, "integer|-42" },
      { "2^53 - 1", 9007199254740991, "integer", nil, "integer|9007199254740991" },
      { "-(2^53 - 1)", -9007199254740991, "integer", nil, "integer|-9007199254740991" },
      { "2^53", 9007199254740992, "integer", nil, "integer|9007199254740992" },
      { "a float", 0.5, "real", nil, "real|0.5" },
      { "a negative float", -1.25, "real", nil, "real|-1.25" },
      { "a large float", 1e300, "real" },
      { "infinity", math.huge, "real" },
      { "minus infinity", -math.huge, "real" },
      { "the empty string", "", "text", nil, "text|" },
      { "NUL bytes", "a\0b\0", "text", nil, "text|" .. hex("a\0b\0") },
      { "bytes over 127", "\128\200\255 caf\195\169", "text", nil, "text|" .. hex("\128\200\255 caf\195\169") },
      { "every byte", all_bytes(), "text", nil, "text|" .. hex(all_bytes()) },
      { "a long string", string.rep("xy", 100000), "text" },
      { "true", true, "integer", 1, "integer|1" },
      { "false", false, "integer", 0, "integer|0" },
      { "nil", nil, "null", nil, "null|NULL" },
    }
    if HAS_INTEGERS then
      local extra = {
        { "math.maxinteger", math.maxinteger, "integer", nil, "integer|9223372036854775807" },
        { "math.mininteger", math.mininteger, "integer", nil, "integer|-9223372036854775808" },
        { "2^53 + 1", 9007199254740993, "integer", nil, "integer|9007199254740993" },
        { "-(2^53 + 1)", -9007199254740993, "integer", nil, "integer|-9007199254740993" },
        { "a float with a whole value", 2.0, "real", nil, "real|2.0" },
        { "2^63 as a float", 2.0 ^ 63, "real" },
      }
      for _, case in ipairs(extra) do
        cases[#cases + 1] = case
      end
    else
      local extra = {
        { "a whole number", 2.0, "integer", nil, "integer|2" },
        { "2^53 + 2", 9007199254740994, "integer", nil, "integer|9007199254740994" },
        { "-2^63", -2 ^ 63, "integer", nil, "integer|-9223372036854775808" },
        { "2^63 (past int64)", 2 ^ 63, "real" },
        { "1.5 * 2^62", 1.5 * 2 ^ 62, "integer", nil, "integer|6917529027641081856" },
      }
      for _, case in ipairs(extra) do
        cases[#cases + 1] = case
      end
    end

    local db, path, insert, read
    setup(function()
      db, path = new_db(nil, "values.db")
      assert(db:exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"))
      insert = assert(db:prepare("INSERT INTO t(id, v) VALUES (?1, ?2)"))
      read = assert(db:prepare("SELECT v, typeof(v) AS type FROM t WHERE id = ?1"))
      for i, case in ipairs(cases) do
        assert.are.equal(1, insert:run(i, case[2]))
      end
    end)
    teardown(function()
      db:close()
    end)

    for i, case in ipairs(cases) do
      local name, value, sql_type, back = case[1], case[2], case[3], case[4]
      it("stores " .. name .. " as " .. sql_type .. " and reads it back", function()
        local row = read:first(i)
        assert.are.equal(sql_type, row.type)
        if back == nil then
          back = value
        end
        if back == nil then
          assert.is_nil(row.v)
          assert.are.same({ type = "null" }, row)
        else
          assert_same_value(back, row.v, name)
        end
        -- The same value bound and selected at once, without a table in between.
        local direct = db:prepare("SELECT ?1 AS v")
        assert_same_value(back, direct:first(value).v, name)
        direct:finalize()
      end)
    end

    it("stores what the sqlite3 command reads back", function()
      if not HAS_CLI then
        pending("the sqlite3 command is not installed")
        return
      end
      local out = sh("sqlite3 -batch -noheader " .. q(path) .. [[ "SELECT id || ' ' || typeof(v) || '|' ||
        CASE typeof(v) WHEN 'text' THEN hex(v) ELSE quote(v) END FROM t ORDER BY id"]])
      local seen = {}
      for id, line in out:gmatch("(%d+) ([^\n]*)") do
        seen[tonumber(id)] = line
      end
      local checked = 0
      for i, case in ipairs(cases) do
        if case[5] then
          assert.are.equal(case[5], seen[i], case[1])
          checked = checked + 1
        end
      end
      assert.is_true(checked > 10)
    end)

    it("reads what the sqlite3 command wrote", function()
      if not HAS_CLI then
        pending("the sqlite3 command is not installed")
        return
      end
      local other = new_path("cli.db")
      sh("sqlite3 -batch " .. q(other) .. [[ "CREATE TABLE t(i, n, r, s, b, z);
        INSERT INTO t VALUES (9223372036854775807, -7, 0.1, 'h' || char(233) || 'llo', X'00FF10', NULL)"]])
      local cli = assert(sqlite3.open(other))
      local row = cli:prepare("SELECT * FROM t"):first()
      assert_same_value(HAS_INTEGERS and math.maxinteger or 2 ^ 63, row.i, "i")
      assert_same_value(-7, row.n, "n")
      assert_same_value(0.1, row.r, "r")
      assert.are.equal("h\195\169llo", row.s)
      assert.are.equal("\0\255\16", row.b)
      assert.is_nil(row.z)
      cli:close()
    end)
  end)

  describe("statements", function()
    local db
    before_each(function()
      db = new_db()
      assert(db:exec([[CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT UNIQUE, age INTEGER);
        INSERT INTO people(name, age) VALUES ('ann', 30), ('bob', 41), ('cy', NULL)]]))
    end)
    after_each(function()
      db:close()
    end)

    it("run returns the rows changed, and db:changes agrees", function()
      local cases = {
        { "INSERT INTO people(name, age) VALUES (?, ?)", { "dee", 7 }, 1 },
        { "UPDATE people SET age = age + 1 WHERE age >= ?", { 30 }, 2 },
        { "UPDATE people SET age = 0 WHERE name = ?", { "nobody" }, 0 },
        { "DELETE FROM people WHERE age IS NULL", {}, 1 },
        { "DELETE FROM people", {}, 3 },
      }
      for _, case in ipairs(cases) do
        local stmt = assert(db:prepare(case[1]))
        assert_same_value(case[3], stmt:run(unpack(case[2])), case[1])
        assert_same_value(case[3], db:changes(), case[1])
      end
    end)

    it("run counts its own changes: a SELECT or CREATE changed nothing", function()
      assert.are.equal(3, db:prepare("UPDATE people SET age = 1"):run())
      assert.are.equal(0, db:prepare("SELECT * FROM people"):run())
      assert.are.equal(0, db:prepare("CREATE TABLE other(x)"):run())
      assert.are.equal(3, db:changes()) -- SQLite's count of the last UPDATE, unmoved
      assert.are.equal(1, db:prepare("INSERT INTO other VALUES (1)"):run())
      assert.are.equal(1, db:changes())
    end)

    it("last_insert_rowid names the row inserted last", function()
      local insert = db:prepare("INSERT INTO people(name) VALUES (?)")
      insert:run("eve")
      assert_same_value(4, db:last_insert_rowid(), "rowid")
      insert:run("fay")
      assert_same_value(5, db:last_insert_rowid(), "rowid")
    end)

    it("query returns every row keyed by column name, NULL columns absent", function()
      local rows = db:prepare("SELECT id, name, age FROM people ORDER BY id"):query()
      assert.are.same({
        { id = 1, name = "ann", age = 30 },
        { id = 2, name = "bob", age = 41 },
        { id = 3, name = "cy" },
      }, rows)
      assert.are.same({}, db:prepare("SELECT * FROM people WHERE age > ?"):query(100))
      local named = db:prepare("SELECT name AS who, age * 2 AS twice FROM people WHERE id = ?1 OR id = ?1")
      assert.are.same({ { who = "bob", twice = 82 } }, named:query(2))
    end)

    it("first returns the first row, or false when there is none", function()
      local stmt = db:prepare("SELECT name FROM people WHERE age > ? ORDER BY id")
      assert.are.same({ name = "ann" }, stmt:first(20))
      assert.are.same({ name = "bob" }, stmt:first(35))
      assert.is_false(stmt:first(100))
    end)

    it("leaves the statement reset: a first() keeps no read open", function()
      local stmt = db:prepare("SELECT name FROM people ORDER BY id")
      assert.are.same({ name = "ann" }, stmt:first())
      -- Were the SELECT still open, DROP TABLE would fail with 'table is locked'.
      assert.is_true(db:exec("DROP TABLE people"))
    end)

    it("takes a statement again after an error", function()
      local insert = db:prepare("INSERT INTO people(name) VALUES (?)")
      local ok, err, code = insert:run("ann")
      assert.is_nil(ok)
      assert.are.equal("UNIQUE constraint failed: people.name", err)
      assert.are.equal("constraint", code)
      assert.are.equal(1, insert:run("gus"))
      local select = db:prepare("SELECT age FROM people WHERE name = ?")
      assert.are.same({ { age = 30 } }, select:query("ann"))
    end)

    it("runs INSERT ... RETURNING through query", function()
      local stmt = db:prepare("INSERT INTO people(name, age) VALUES (?, ?) RETURNING id, age")
      assert.are.same({ { id = 4, age = 9 } }, stmt:query("hal", 9))
      assert.are.equal(1, db:changes())
    end)

    it("exec runs several statements and returns no rows", function()
      assert.is_true(db:exec("CREATE TABLE x(a); INSERT INTO x VALUES (1); SELECT * FROM x;"))
      assert.are.same({ a = 1 }, db:prepare("SELECT a FROM x"):first())
      local ok, err, code = db:exec("INSERT INTO x VALUES (2); SELEC 1")
      assert.is_nil(ok)
      assert.matches("syntax error", err)
      assert.are.equal("error", code)
      assert.are.equal(2, #db:prepare("SELECT a FROM x"):query()) -- what came before ran
    end)

    it("prepare returns nil, message, code for SQL SQLite refuses", function()
      local cases = {
        { "SELEC 1", 'near "SELEC": syntax error' },
        { "SELECT * FROM nowhere", "no such table: nowhere" },
        { "SELECT shoe_size FROM people", "no such column: shoe_size" },
      }
      for _, case in ipairs(cases) do
        local stmt, err, code = db:prepare(case[1])
        assert.is_nil(stmt, case[1])
        assert.are.equal(case[2], err)
        assert.are.equal("error", code)
      end
    end)
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

  describe("open's file checks", function()
    -- name, make(path) (makes what the database name should meet), the reason in the message,
    -- which file the message names (the database unless a suffix is given), and whether the
    -- case needs root.
    local function make_db(path)
      local db = assert(sqlite3.open(path, { create = true }))
      assert(db:exec("CREATE TABLE t(a); INSERT INTO t VALUES ('guest data')"))
      db:close()
    end
    local cases = {
      { "a symbolic link to a database", function(path)
        make_db(path .. ".real")
        sh("ln -s " .. q(path .. ".real") .. " " .. q(path))
      end, "a symbolic link, not a regular file" },
      { "a dangling symbolic link, create set", function(path)
        sh("ln -s " .. q(path .. ".target") .. " " .. q(path))
      end, "a symbolic link, not a regular file" },
      { "a FIFO", function(path) sh("mkfifo " .. q(path)) end, "a FIFO, not a regular file" },
      { "a directory", function(path) sh("mkdir " .. q(path)) end, "a directory, not a regular file" },
      { "a file with a second hard link", function(path)
        make_db(path)
        sh("ln " .. q(path) .. " " .. q(path .. ".other"))
      end, "has 2 hard links" },
      { "a file owned by nobody", function(path)
        make_db(path)
        sh("chown nobody " .. q(path))
      end, "owned by uid %d+, not by this process %(uid 0%)", nil, true },
      { "a -wal that is a symbolic link", function(path)
        make_db(path)
        support.write(path .. ".elsewhere", "")
        sh("ln -s " .. q(path .. ".elsewhere") .. " " .. q(path .. "-wal"))
      end, "a symbolic link, not a regular file", "-wal" },
      { "a -shm that is a FIFO", function(path)
        make_db(path)
        sh("mkfifo " .. q(path .. "-shm"))
      end, "a FIFO, not a regular file", "-shm" },
      { "a -journal with a second hard link", function(path)
        make_db(path)
        support.write(path .. ".other", "")
        sh("ln " .. q(path .. ".other") .. " " .. q(path .. "-journal"))
      end, "has 2 hard links", "-journal" },
      { "a -wal owned by nobody", function(path)
        make_db(path)
        support.write(path .. "-wal", "")
        sh("chown nobody " .. q(path .. "-wal"))
      end, "owned by uid %d+, not by this process %(uid 0%)", "-wal", true },
    }
    for _, case in ipairs(cases) do
      local name, make, reason, suffix, needs_root = case[1], case[2], case[3], case[4] or "", case[5]
      it("refuses " .. name .. " with code unsafe", function()
        if needs_root and not IS_ROOT then
          pending("only root can give a file to nobody")
          return
        end
        local path = new_path("unsafe.db")
        make(path)
        local listing = sh("ls -A1 " .. q(dir))
        local target = exists(path .. ".real") and support.read(path .. ".real")
        local db, err, code = sqlite3.open(path, { create = true })
        assert.is_nil(db)
        assert.are.equal("unsafe", code)
        assert.matches("^" .. (path .. suffix):gsub("%p", "%%%0") .. ": " .. reason .. "$", err)
        -- Nothing was created or changed on the way.
        assert.are.equal(listing, sh("ls -A1 " .. q(dir)))
        if target then
          assert.are.equal(target, support.read(path .. ".real"))
        end
      end)
    end

    it("refuses a path through a folder that is a symbolic link, and leaves nothing there", function()
      local real, link = new_path("real"), new_path("link")
      sh("mkdir " .. q(real) .. " && ln -s " .. q(real) .. " " .. q(link))
      assert.are.same({ nil, link .. "/x.db: a symbolic link on the way, which SQLite does not follow", "unsafe" },
        { sqlite3.open(link .. "/x.db", { create = true }) })
      assert.are.equal("", sh("ls -A " .. q(real)))
    end)

    it("opens the file a symbolic link points at, named directly", function()
      local path = new_path("direct.db")
      make_db(path)
      sh("ln -s " .. q(path) .. " " .. q(path .. ".link"))
      local db = assert(sqlite3.open(path))
      assert.are.same({ a = "guest data" }, db:prepare("SELECT a FROM t"):first())
      db:close()
    end)
  end)

  describe("modes and names", function()
    -- Runs Lua code in a child process of this runtime under the umask given, in folder.
    local function run_child(umask, folder, code, ...)
      local script = new_path("child.lua")
      support.write(script, code)
      local args = {}
      for i, a in ipairs({ ... }) do
        args[i] = q(tostring(a))
      end
      return sh("cd " .. q(folder) .. " && umask " .. umask .. " && LUA_CPATH=" .. q(absolute_cpath()) .. " "
        .. q(runner.interpreter()) .. " " .. q(script) .. " " .. table.concat(args, " "))
    end

    local CHILD = [[
local sqlite3 = require "jicoo.webhook.sqlite3"
local path, mode = arg[1], tonumber(arg[2])
local db = assert(sqlite3.open(path, { create = true, mode = mode }))
assert(db:exec("PRAGMA journal_mode=WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1)"))
local journal_mode = db:prepare("PRAGMA journal_mode"):first().journal_mode
local pipe = io.popen("stat -c %a '" .. path .. "' '" .. path .. "-wal' '" .. path .. "-shm'")
io.write(journal_mode, " ", (pipe:read("*a"):gsub("\n", " ")))
pipe:close()
db:close()
]]
    -- umask, mode (nil: the default), the bits expected of the database, -wal and -shm.
    local cases = {
      { "0", nil, "600", " (the default)" },
      { "0", 384, "600" },
      { "0", 416, "640" },
      { "077", 420, "644" },
      { "022", 438, "666" },
    }
    for _, case in ipairs(cases) do
      local umask, mode, bits, default = case[1], case[2], case[3], case[4] or ""
      it("creates the file " .. bits .. default .. " under umask " .. umask .. ", and SQLite its -wal and -shm", function()
        local path = new_path("mode.db")
        local out = run_child(umask, dir, CHILD, path, mode or "")
        assert.are.equal("wal " .. bits .. " " .. bits .. " " .. bits .. " ", out)
        assert.are.equal(bits, mode_of(path))
      end)
    end

    it("leaves an existing file's mode alone", function()
      local path = new_path("kept.db")
      support.write(path, "")
      sh("chmod 604 " .. q(path))
      local db = assert(sqlite3.open(path, { create = true, mode = 384 }))
      assert(db:exec("CREATE TABLE t(a)"))
      db:close()
      assert.are.equal("604", mode_of(path))
    end)

    it("turns WAL mode on, and it stays on", function()
      local db, path = new_db()
      assert(db:exec("PRAGMA journal_mode=WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1)"))
      assert.are.equal("wal", db:prepare("PRAGMA journal_mode"):first().journal_mode)
      assert.is_true(exists(path .. "-wal"))
      db:close()
      db = assert(sqlite3.open(path))
      assert.are.equal("wal", db:prepare("PRAGMA journal_mode"):first().journal_mode)
      db:close()
    end)

    it("takes ':memory:' and 'file:' names as the files they spell", function()
      local folder = new_path("names")
      sh("mkdir " .. q(folder))
      local out = run_child("022", folder, [[
local sqlite3 = require "jicoo.webhook.sqlite3"
for _, name in ipairs({ ":memory:", "file:x.db?mode=memory" }) do
  local db = assert(sqlite3.open(name, { create = true }))
  assert(db:exec("CREATE TABLE t(a); INSERT INTO t VALUES ('on disk')"))
  db:close()
end
]])
      assert.are.equal("", out)
      assert.are.equal("600", mode_of(folder .. "/:memory:"))
      assert.are.equal("600", mode_of(folder .. "/file:x.db?mode=memory"))
      local db = assert(sqlite3.open(folder .. "/file:x.db?mode=memory"))
      assert.are.same({ a = "on disk" }, db:prepare("SELECT a FROM t"):first())
      db:close()
    end)
  end)
end)
