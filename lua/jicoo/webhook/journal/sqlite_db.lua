-- The SQLite journal's database: the folder and files made safe, the schema, the connections,
-- and the transaction that runs a batch of operations (journal/sqlite_ops.lua has them as SQL).
-- It runs where the database is opened: in the process itself (plain Lua, the command line),
-- or in a Lua state of nginx's thread pool (ngx.run_worker_thread runs `batch` there), so it
-- touches nothing of nginx's. journal/sqlite.lua decides which.
--
--   DIR/journal.db (and SQLite's journal.db-wal, journal.db-shm): mode 0600, DIR 0700, all owned
--   by the receiver's user; a link, a FIFO or a file of another user where one of them should be
--   is refused, never followed.
--
-- One table, `deliveries`, a row per delivery, with a column per record field (handlers and
-- errors as JSON); `due_at` is the time the scheduler looks at (the lease's end while running,
-- the next attempt while failed), indexed so that a pass costs what is due, not what is open.
-- The bodies are rows of their own, `bodies`, under the delivery's id: a delivery's row stays
-- small (lists read many of them), and a done one loses its body by a delete, not a rewrite.
-- `tally` counts the rows by state and event, kept by triggers, so that counts and the cap on
-- open deliveries cost a lookup.
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local require = require
local unpack = table.unpack or unpack   -- luacheck: ignore 143

local core = require "jicoo.webhook.core"
local sqlite_ops = require "jicoo.webhook.journal.sqlite_ops"

local _M = {}

_M.FILE = "journal.db"
-- 2: budget_from and rearmed_at (an operator's retry keeps the attempts; MIGRATIONS[1] adds them)
local SCHEMA_VERSION = 2
_M.SCHEMA_VERSION = SCHEMA_VERSION

local SCHEMA = [[
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
  budget_from INTEGER NOT NULL DEFAULT 0,
  rearmed_at REAL,
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

-- What takes a database of version n to n + 1, run in the same transaction as the new
-- user_version. A column added with ALTER TABLE goes after due_at; the statements name their
-- columns, so the order does not matter.
local MIGRATIONS = {
  [1] = "ALTER TABLE deliveries ADD COLUMN budget_from INTEGER NOT NULL DEFAULT 0;"
    .. " ALTER TABLE deliveries ADD COLUMN rearmed_at REAL;",
}

---------------------------------------------------------------------------------------------
-- The folder and the files

local function unsafe(path, what)
  return nil, path .. ": " .. what .. "; the journal uses only a folder and files of its own",
    "unsafe"
end

-- The journal's folder, made (0700) when absent, made 0700 when it is ours and open to others;
-- refused when it is a link, not a folder, or another user's. true, or nil, err, code.
function _M.prepare_folder(dir)
  local info = core.file_info(dir)
  if not info then
    local ok, err = core.file_mkdir(dir, 448)   -- 0700
    if not ok then
      return nil, "cannot make the journal's folder: " .. err, "cantopen"
    end
    info = core.file_info(dir)
    if not info then
      return nil, "cannot make the journal's folder " .. dir, "cantopen"
    end
  end
  if info.kind ~= "folder" then
    return unsafe(dir, "a " .. info.kind .. ", not a folder")
  end
  local uid = core.process_user()
  if info.uid ~= uid then
    return unsafe(dir, "owned by uid " .. info.uid .. ", not by this process (uid " .. uid .. ")")
  end
  if info.mode % 64 ~= 0 then   -- group or others may reach it
    local ok, err = core.file_chmod(dir, 448)
    if not ok then
      return nil, "cannot close the journal's folder to others: " .. err, "perm"
    end
  end
  return true
end

---------------------------------------------------------------------------------------------
-- Connections: one per database path in this Lua state, its statements prepared once.

local connections = {}   -- path -> { db = , stmts = , path = }


local schema_version = sqlite_ops.schema_version

-- Makes the schema (a new database) or takes an older one to SCHEMA_VERSION, one migration at a
-- time, each in a write transaction that reads the version again first: of two processes
-- opening the database at once, the second finds the work done. true, or nil, err, code.
local function upgrade(db, path)
  local version, err, code = schema_version(db)
  while version and version ~= SCHEMA_VERSION do
    if version > SCHEMA_VERSION then
      return nil, path .. ": made by a newer jicoo-webhook (schema " .. version .. ")", "error"
    end
    local ok
    ok, err, code = db:exec("BEGIN IMMEDIATE")
    if not ok then
      return nil, err, code
    end
    version, err, code = schema_version(db)
    local step
    if version == 0 then
      step = SCHEMA .. " PRAGMA user_version = " .. SCHEMA_VERSION .. ";"
    elseif version and version < SCHEMA_VERSION then
      step = MIGRATIONS[version] .. " PRAGMA user_version = " .. (version + 1) .. ";"
    end
    if step then
      ok, err, code = db:exec(step)
    else
      ok = version ~= nil
    end
    if ok then
      ok, err, code = db:exec("COMMIT")
    end
    if not ok then
      db:exec("ROLLBACK")
      return nil, err, code
    end
    version, err, code = schema_version(db)
  end
  if not version then
    return nil, err, code
  end
  return true
end

-- The connection to DIR/journal.db, opened (and the schema made) on first use in this state.
-- settings: durability ("full" | "normal"), busy_timeout (ms).
function _M.connect(dir, settings)
  local path = dir .. "/" .. _M.FILE
  local conn = connections[path]
  if conn then
    return conn
  end
  local ok, err, code = _M.prepare_folder(dir)
  if not ok then
    return nil, err, code
  end
  local sqlite3 = require "jicoo.webhook.sqlite3"
  local db
  db, err, code = sqlite3.open(path, { create = true, mode = 384, busy_timeout =
    settings.busy_timeout })
  if not db then
    return nil, err, code
  end
  -- Commits do not sync (NORMAL): with durability "full", batch syncs the WAL after the commit,
  -- outside the write lock (db:sync_wal), so that one worker's sync does not hold the others.
  ok, err, code = db:exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
    .. " PRAGMA foreign_keys = OFF")
  if ok then
    ok, err, code = upgrade(db, path)
  end
  if not ok then
    db:close()
    return nil, err, code
  end
  conn = { db = db, stmts = {}, path = path }
  connections[path] = conn
  -- The file journal that came before, in the same folder, moves in on the first open (what
  -- cannot be read as a record stays where it is; `jicoo-webhook deliveries import` names it).
  local files_import = require "jicoo.webhook.journal.files_import"
  if files_import.present(dir) then
    files_import.run(dir, dir, settings)
  end
  return conn
end

-- Closes this state's connection to DIR's database (the next call opens it again).
function _M.disconnect(dir)
  local path = dir .. "/" .. _M.FILE
  local conn = connections[path]
  if conn then
    for _, stmt in pairs(conn.stmts) do
      stmt:finalize()
    end
    conn.db:close()
    connections[path] = nil
  end
end


-- Runs ops (a list of { name, arg1, ..., n = count of arguments + 1 }) in one transaction on
-- DIR's database: the list of their results (each what the journal's method returns, packed
-- with its count n). When the database fails, every op gets that failure: the transaction is
-- rolled back whole. With durability "full" a transaction that wrote is synced before this
-- returns; with `later`, it is not, and the results say `unsynced = true`: the caller syncs
-- (_M.sync) before it answers anyone. This is what nginx's thread pool runs
-- (ngx.run_worker_thread(pool, "jicoo.webhook.journal.sqlite_db", "batch", ...)).
function _M.batch(dir, settings, list, later)
  local conn, err, code = _M.connect(dir, settings)
  local results = {}
  if conn then
    local db = conn.db
    local writes = false
    for _, op in ipairs(list) do
      writes = writes or not sqlite_ops.READS[op[1]]
    end
    local ok
    ok, err, code = db:exec(writes and "BEGIN IMMEDIATE" or "BEGIN")
    if ok then
      for i, op in ipairs(list) do
        local result = sqlite_ops.ops[op[1]](conn, unpack(op, 2, op.n or #op))
        if result.failure then
          ok, err, code = nil, result[2], result[3]
          break
        end
        results[i] = result
      end
      if ok then
        ok, err, code = db:exec("COMMIT")
        if not ok then
          db:exec("ROLLBACK")
        elseif writes and settings.durability ~= "normal" then
          if later then
            results.unsynced = true
          else
            ok, err, code = db:sync_wal()   -- the commit on disk before anyone is answered
          end
        end
      else
        db:exec("ROLLBACK")
      end
    end
    if ok then
      return results
    end
    if code ~= "busy" and code ~= "full" then
      _M.disconnect(dir)   -- open it again next time: the failure may have been the connection's
    end
  end
  local failure = sqlite_ops.failed("journal " .. dir .. "/" .. _M.FILE .. ": " .. tostring(err), code)
  for i = 1, #list do
    results[i] = failure
  end
  return results
end

-- Syncs DIR's WAL to the disk: every transaction committed before, by any connection, is on
-- disk when it returns true (nil, message, code when it fails). nginx's thread pool runs it
-- after the batches it commits unsynced.
function _M.sync(dir, settings)
  local conn, err, code = _M.connect(dir, settings)
  local ok
  if conn then
    ok, err, code = conn.db:sync_wal()
    if ok then
      return true
    end
    _M.disconnect(dir)
  end
  return nil, "journal " .. dir .. "/" .. _M.FILE .. ": " .. tostring(err), code
end

return _M
