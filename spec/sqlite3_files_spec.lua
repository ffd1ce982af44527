-- jicoo.webhook.sqlite3 and the files it opens: what open refuses with the code unsafe (links,
-- FIFOs, folders, hard links, other owners, for the database and its -wal, -shm and -journal),
-- a link it follows when named directly, the modes of the files it and SQLite create under any
-- umask, WAL mode, and ':memory:' and 'file:' names taken as files.
local sqlite3 = require "jicoo.webhook.sqlite3"
local support = require "support"
local runner = require "cli_runner"
local shared = require "sqlite3_shared"

local q = support.quote
local IS_ROOT, new_path = shared.IS_ROOT, shared.new_path
local exists, sh, new_db = shared.exists, shared.sh, shared.new_db

local function mode_of(path)
  return (assert(support.run("stat -c %a " .. q(path))):gsub("%s+$", ""))
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

local dir

describe("jicoo.webhook.sqlite3", function()
  setup(function()
    dir = shared.make_dir()
  end)

  teardown(function()
    shared.remove_dir()
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
