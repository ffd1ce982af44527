-- The SQLite journal: every delivery a row of one database file in the journal's folder
-- (journal/sqlite_db.lua has the schema and the SQL), durable on one machine, for every nginx
-- worker on it and the command line alike.
--
-- Where the disk is touched:
--   - in plain Lua (the command line, scripts, the specs), each call is one transaction, run
--     where it is called;
--   - inside nginx, in a phase that may yield, calls never touch the disk on the worker's event
--     loop: they wait on a semaphore while the worker's committer (a timer) hands their
--     operations to nginx's thread pool (ngx.run_worker_thread; nginx.conf needs
--     `thread_pool NAME threads=N;`), and every call made while one transaction is on its way
--     shares the next one (group commit). With durability "full" a committed transaction's
--     calls then wait for the worker's syncer (another timer), whose one sync of the WAL covers
--     every transaction committed before it began, while the committer goes on with the next
--     transaction: the sync and the next commit overlap. A call waits at most wait_timeout,
--     then fails (the router answers 500 and the sender retries).
--   - inside nginx without the thread pool (none in nginx.conf, or a phase that cannot yield),
--     the call runs where it is made, blocking the worker, and says so in the log once.
--
-- Options: dir (the folder, required), ttl (seconds a done record is kept), durability ("full":
-- a commit is on disk before the call returns, power cut included; "normal": it survives a crash
-- of any process, the last moments may be lost to a power cut), max_open (deliveries not done,
-- at most: past it, new ones are refused with the code "full"), busy_timeout (ms a transaction
-- waits for another's lock), wait_timeout (ms a call waits in nginx), thread_pool (the name in
-- nginx.conf, "jicoo_journal").
local setmetatable = setmetatable
local type = type
local tostring = tostring
local rawget = rawget
local select = select
local ipairs = ipairs
local unpack = table.unpack or unpack   -- luacheck: ignore 143

local journal = require "jicoo.webhook.journal"
local options = require "jicoo.webhook.options"
local sqlite_db = require "jicoo.webhook.journal.sqlite_db"
local sqlite_ops = require "jicoo.webhook.journal.sqlite_ops"

local _M = {}

_M.DEFAULT_MAX_OPEN = 1000000
_M.DEFAULT_BUSY_TIMEOUT = 2000
_M.DEFAULT_WAIT_TIMEOUT = 5000
_M.DEFAULT_THREAD_POOL = "jicoo_journal"
local MODULE = "jicoo.webhook.journal.sqlite_db"
-- One committer a worker: a second made batches smaller and was not faster here
-- (spec/bench/journal.sh); what overlaps is one transaction's sync and the next one's commit.
local COMMITTERS = 1
local SWEEP_EVERY = 60   -- seconds between two removals of done records past their time

local function semaphore()
  return require "ngx.semaphore"
end

local ms = { check = options.not_negative, what = "a number of milliseconds" }
local OPTIONS = options.schema("journal.sqlite", {
  { "dir", "string", required = true, check = function(v) return v ~= "" end,
    what = "the journal's folder" },
  { "ttl", "number", default = journal.DEFAULT_TTL, check = options.positive,
    what = "a positive number of seconds" },
  { "durability", "string", default = "full", check = options.one_of("full", "normal"),
    what = '"full" or "normal"' },
  { "max_open", "number", default = _M.DEFAULT_MAX_OPEN, check = options.positive,
    what = "a positive number" },
  { "busy_timeout", "number", default = _M.DEFAULT_BUSY_TIMEOUT, check = ms.check, what = ms.what },
  { "wait_timeout", "number", default = _M.DEFAULT_WAIT_TIMEOUT, check = options.positive,
    what = "a positive number of milliseconds" },
  { "thread_pool", "string", default = _M.DEFAULT_THREAD_POOL },
})

-- The nginx phases in which a call may wait on a semaphore.
local YIELDING_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

local SQLite = {}
SQLite.__index = SQLite
SQLite.__name = "jicoo.webhook.journal.sqlite"   -- store.is_ours: it returns, never raises, on failure

function _M.new(opts)
  local o = OPTIONS:check(opts, 3)
  local dir = o.dir:sub(-1) == "/" and #o.dir > 1 and o.dir:sub(1, -2) or o.dir
  return setmetatable({
    dir = dir,
    ttl = o.ttl,
    max_open = o.max_open,
    settings = { durability = o.durability, busy_timeout = o.busy_timeout },
    wait_timeout = o.wait_timeout / 1000,
    thread_pool = o.thread_pool,
    durable = true,
    filling = nil,     -- nginx: the batch the next call joins
    committers = 0,    -- nginx: the committers' timers running
    work = nil,        -- nginx: the semaphore a new batch is announced on
    unsynced = {},     -- nginx: the batches committed, their sync not yet begun
    syncing = nil,     -- nginx: the semaphore a committed batch is announced on (its syncer's)
    pool_missing = nil,
    swept_at = -math.huge,   -- the `now` of the last sweep
    sweep_full = false,      -- whether it removed all it may at once
  }, SQLite)
end

---------------------------------------------------------------------------------------------
-- Running operations

-- Runs one operation where this code runs: its own transaction.
local function run_here(self, op)
  local result = sqlite_db.batch(self.dir, self.settings, { op })[1]
  return unpack(result, 1, result.n)
end

-- Whether this call may wait for the thread pool: inside nginx, in a phase that yields, with
-- the pool there.
local function can_wait(self)
  local ngx = rawget(_G, "ngx")
  if not (ngx and ngx.run_worker_thread and ngx.get_phase) or self.pool_missing then
    return false
  end
  return YIELDING_PHASES[ngx.get_phase()] == true
end

local function fail_batch(batch, message, code)
  local failure = { n = 3, nil, message, code or "error" }
  for i = 1, #batch.ops do
    batch.results[i] = failure
  end
end

local function wake(batch)
  batch.done = true
  batch.sema:post(batch.waiting)
end

-- Syncs the WAL in the thread pool, then wakes the callers of batches, committed before (a
-- failed sync fails them all: their records are written but may not be on disk, and the sender
-- retries).
local function sync(self, batches)
  local ngx = rawget(_G, "ngx")
  local ok, synced, err, code = ngx.run_worker_thread(self.thread_pool, MODULE, "sync", self.dir,
    self.settings)
  if not ok then   -- the pool's own failure (sync's names the journal's file)
    err = "journal " .. self.dir .. ": the thread pool failed: " .. tostring(synced)
  end
  for _, batch in ipairs(batches) do
    if not (ok and synced) then
      fail_batch(batch, err, code)
    end
    wake(batch)
  end
end

-- Hands one batch to the thread pool: its transaction commits there, unsynced. Its callers are
-- woken then when it only read, or when the journal does not sync (durability "normal"); else
-- the syncer wakes them once the sync after the commit is done.
local function commit(self, batch)
  local ngx = rawget(_G, "ngx")
  local ok, results = ngx.run_worker_thread(self.thread_pool, MODULE, "batch", self.dir,
    self.settings, batch.ops, true)
  if ok then
    batch.results = results
    if results.unsynced then
      if self.syncing then
        self.unsynced[#self.unsynced + 1] = batch
        self.syncing:post(1)
      else
        sync(self, { batch })   -- the syncer has ended (nginx is exiting): synced here
      end
      return
    end
  elseif type(results) == "string" and results:find("not found", 1, true) then
    self.pool_missing = results
    ngx.log(ngx.WARN, "jicoo-webhook: no `thread_pool ", self.thread_pool, "` in nginx.conf (",
      results, "): the journal's disk work blocks the worker; add the line to keep it off")
    batch.results = sqlite_db.batch(self.dir, self.settings, batch.ops)
  else
    fail_batch(batch, "journal " .. self.dir .. ": the thread pool failed: " .. tostring(results))
  end
  wake(batch)
end

-- The worker's syncer, a timer for as long as the worker runs: syncs the WAL once for every
-- batch committed before the sync begins. It sleeps on `syncing` while nothing waits, and ends
-- when nginx exits, once nothing is left to sync and the committers have ended.
local function syncer(premature, self)
  local ngx = rawget(_G, "ngx")
  while true do
    local batches = self.unsynced
    if #batches > 0 then
      self.unsynced = {}
      sync(self, batches)
    elseif (premature or ngx.worker.exiting()) and self.committers == 0 then
      break
    else
      self.syncing:wait(1)
    end
  end
  self.syncing = nil
end

-- The worker's committers, COMMITTERS timers for as long as the worker runs: each commits the
-- batch calls have filled when it is free, and sleeps on `work` while there is none (a new batch
-- wakes one; each looks every second whether nginx is exiting).
local function committer(premature, self)
  local ngx = rawget(_G, "ngx")
  while not premature do
    local batch = self.filling
    if batch then
      self.filling = nil
      commit(self, batch)
    elseif ngx.worker.exiting() then
      break
    else
      self.work:wait(1)
    end
  end
  while self.filling do   -- exiting: calls made meanwhile are answered, not left waiting
    local batch = self.filling
    self.filling = nil
    fail_batch(batch, "journal " .. self.dir .. ": nginx is exiting")
    wake(batch)
  end
  self.committers = self.committers - 1
end

-- Queues op for the next transaction and waits for its result (inside nginx).
local function run_pooled(self, op)
  local ngx = rawget(_G, "ngx")
  local batch = self.filling
  local i = 1
  if batch then
    i = #batch.ops + 1
    batch.ops[i] = op
  else
    if not self.syncing then
      local ok, err = ngx.timer.at(0, syncer, self)
      if not ok then
        return nil, "journal " .. self.dir .. ": cannot start its timer: " .. tostring(err), "error"
      end
      self.syncing = semaphore().new()
    end
    batch = { ops = { op }, results = {}, waiting = 0, sema = semaphore().new() }
    self.filling = batch
    self.work = self.work or semaphore().new()
    if self.committers < COMMITTERS then
      local ok, err = ngx.timer.at(0, committer, self)
      if not ok then
        self.filling = nil
        return nil, "journal " .. self.dir .. ": cannot start its timer: " .. tostring(err), "error"
      end
      self.committers = self.committers + 1
    else
      self.work:post(1)   -- a committer that waits takes it (a busy one finds it when free)
    end
  end
  batch.waiting = batch.waiting + 1
  local ok, err = batch.sema:wait(self.wait_timeout)
  if not ok and not batch.done then
    return nil, "journal " .. self.dir .. ": no answer from the database in "
      .. self.wait_timeout .. " s (" .. tostring(err) .. ")", "timeout"
  end
  local result = batch.results[i]
  return unpack(result, 1, result.n)
end

local function run(self, ...)
  local op = { n = select("#", ...), ... }
  if can_wait(self) then
    return run_pooled(self, op)
  end
  return run_here(self, op)
end

---------------------------------------------------------------------------------------------
-- The journal's methods (journal/init.lua), and its queries

function SQLite:acquire(key, now, lease, new, take_failed)
  return run(self, "acquire", key, now, lease, new, take_failed, journal.token(), self.max_open)
end

function SQLite:update(key, token, changes, now)
  return run(self, "update", key, token, changes, now, self.ttl)
end

-- The scheduler's pass: the keys due. Every SWEEP_EVERY seconds (at once again after a full
-- sweep) it first removes done records past their time, in a transaction of its own: the pass
-- itself only reads, and never waits for the deliveries being written. A sweep that fails is
-- tried again at the next one's time; what it would have removed only stays a little longer.
function SQLite:due(now, limit)
  if now - self.swept_at >= SWEEP_EVERY or self.sweep_full then
    local removed = run(self, "sweep", now)
    self.swept_at, self.sweep_full = now, removed == sqlite_ops.SWEEP_BATCH
  end
  return run(self, "due", now, limit)
end

function SQLite:get(key)
  return run(self, "get", key)
end

function SQLite:list(state)
  local records, err, code = run(self, "find", { state = state ~= "all" and state or nil,
    bodies = true })
  return records, err, code
end

-- filter: state, event, uid, since, until (received_at), error (text in an error message),
-- limit, after (the cursor a previous page gave). The records (without their bodies), oldest
-- first, and the next page's cursor or nil.
function SQLite:find(filter)
  return run(self, "find", filter or {})
end

function SQLite:counts()
  return run(self, "counts")
end

-- Whether the journal takes a write now: the folder lets this process make files (SQLite makes
-- its -wal and -shm there again after a restart) and a write transaction commits, its sync
-- included. What health asks (router/status.lua).
function SQLite:check()
  return run(self, "check")
end

function SQLite:rearm(key, now)
  return run(self, "rearm", key, now)
end

function SQLite:remove(key)
  return run(self, "remove", key)
end

-- Records as another journal kept them (the file journal's), written whole; how many.
function SQLite:import(records)
  return run(self, "import", records)
end

return _M
