-- jicoo.webhook.sqlite3, the SQLite binding under the journal's database: its version, the WAL
-- synced on its own, values of every type there and back (and as the sqlite3 command, another
-- reader and writer, sees them), and statements: run, query, first and exec, what they return,
-- and SQL SQLite refuses. What raises and each failure's code: sqlite3_errors_spec.lua; the
-- files it opens and creates: sqlite3_files_spec.lua.
local sqlite3 = require "jicoo.webhook.sqlite3"
local support = require "support"
local shared = require "sqlite3_shared"

local q = support.quote
local new_path, sh, new_db = shared.new_path, shared.sh, shared.new_db
local unpack = table.unpack or unpack
local HAS_INTEGERS = math.type ~= nil
local HAS_CLI = select(2, support.run("command -v sqlite3 >/dev/null"))

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
    shared.make_dir()
  end)

  teardown(function()
    shared.remove_dir()
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
end)
