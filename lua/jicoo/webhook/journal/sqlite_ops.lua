-- The SQLite journal's operations as SQL (journal/sqlite_db.lua opens the database and runs
-- them in a transaction): each takes the connection and its arguments and returns, packed, what
-- the journal's method returns; a database failure (failed) ends the whole transaction.
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local select = select
local string_format = string.format
local string_match = string.match
local math_floor = math.floor
local table_concat = table.concat
local unpack = table.unpack or unpack   -- luacheck: ignore 143

local json = require "jicoo.webhook.payload.json"
local journal = require "jicoo.webhook.journal"

local _M = {}

local SWEEP_BATCH = 1000      -- done records removed by one sweep
_M.SWEEP_BATCH = SWEEP_BATCH

-- The columns insert writes (budget_from and rearmed_at start at their defaults: only rearm
-- sets them), and those a record is read from.
local COLUMNS = "key, event, uid, state, received_at, attempts, handlers, errors, next_at,"
  .. " lease_until, token, finished_at, expires_at, version"
local READ_COLUMNS = COLUMNS .. ", budget_from, rearmed_at"
-- The same with the body, from its own table.
local WITH_BODY = "d.key AS key, event, uid, state, received_at, attempts, handlers, errors,"
  .. " next_at, lease_until, token, finished_at, expires_at, version, budget_from, rearmed_at,"
  .. " b.body AS body FROM deliveries d LEFT JOIN bodies b ON b.id = d.id"

-- The statements, prepared once per connection.
local SQL = {
  get = "SELECT " .. WITH_BODY .. " WHERE d.key = ?1",
  insert = "INSERT INTO deliveries (" .. COLUMNS .. ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
    .. " ?9, ?10, ?11, ?12, ?13, ?14)",
  insert_body = "INSERT INTO bodies (id, body) VALUES (last_insert_rowid(), ?1)",
  take = "UPDATE deliveries SET state = 'running', attempts = ?2, token = ?3, lease_until = ?4,"
    .. " next_at = NULL, version = ?5 WHERE key = ?1",
  -- changes: NULL leaves a field as it is
  update = "UPDATE deliveries SET state = coalesce(?3, state), handlers = coalesce(?4, handlers),"
    .. " errors = coalesce(?5, errors), next_at = coalesce(?6, next_at),"
    .. " lease_until = coalesce(?7, lease_until), finished_at = coalesce(?8, finished_at),"
    .. " attempts = coalesce(?9, attempts), expires_at = coalesce(?10, expires_at),"
    .. " version = version + 1 WHERE key = ?1 AND state = 'running' AND token = ?2",
  drop_body = "DELETE FROM bodies WHERE id = (SELECT id FROM deliveries WHERE key = ?1)",
  rearm = "UPDATE deliveries SET state = 'failed', next_at = ?2, budget_from = ?3,"
    .. " rearmed_at = ?2, finished_at = NULL, version = ?4 WHERE key = ?1",
  remove = "DELETE FROM deliveries WHERE key = ?1",
  due = "SELECT key FROM deliveries WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2",
  sweep = "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries"
    .. " WHERE expires_at <= ?1 LIMIT " .. SWEEP_BATCH .. ")",
  open_count = "SELECT total(n) AS n FROM tally WHERE state <> 'done'",
  -- whether the booking of record ?1 has another record (through the index on uid)
  others = "SELECT EXISTS (SELECT 1 FROM deliveries WHERE uid = (SELECT uid FROM deliveries"
    .. " WHERE key = ?1 AND uid <> '') AND key <> ?1) AS n",
  tally = "SELECT state, event, n FROM tally WHERE n > 0",
}

-- find's filters, each a condition on the row; their values are bound in this order.
local FILTERS = {
  { name = "state", sql = "state = ?" },
  { name = "event", sql = "event = ?" },
  { name = "uid", sql = "uid = ?" },
  { name = "since", sql = "received_at >= ?" },
  { name = "until", sql = "received_at < ?" },
  { name = "error", sql = "instr(errors, ?) > 0" },
}

-- A statement of SQL, prepared once per connection.
local function statement(conn, name)
  local stmt = conn.stmts[name]
  if not stmt then
    local err, code
    stmt, err, code = conn.db:prepare(SQL[name])
    if not stmt then
      return nil, err, code
    end
    conn.stmts[name] = stmt
  end
  return stmt
end

---------------------------------------------------------------------------------------------
-- Rows and records

local function decode(text, default)
  if text == nil or text == "{}" or text == "[]" then   -- most records: no decoding
    return default
  end
  local value = journal.decode_json(text)
  if value == nil then
    return default
  end
  return value
end

-- A row as the journal's record (the JSON columns read back).
local function record_of(row)
  if not row then
    return nil
  end
  row.handlers = decode(row.handlers, {})
  row.errors = decode(row.errors, {})
  return row
end

local function encode_handlers(handlers)
  if handlers == nil then
    return nil
  end
  local labels = {}
  for label in pairs(handlers) do
    labels[#labels + 1] = label
  end
  if #labels == 0 then
    return "{}"
  end
  local set = {}
  for _, label in ipairs(labels) do
    set[label] = true
  end
  return json.encode(set)
end

local function encode_errors(errors)
  if errors == nil then
    return nil
  elseif #errors == 0 then
    return "[]"
  end
  local list = {}
  for i, e in ipairs(errors) do
    list[i] = { handler = tostring(e.handler), message = tostring(e.message) }
  end
  return json.encode(list)
end

---------------------------------------------------------------------------------------------
-- The operations: each takes the connection and its arguments and returns, packed, what the
-- journal's method returns; a database failure (failed) ends the whole transaction.

local function pack(...)
  return { n = select("#", ...), ... }
end

local function failed(err, code)
  return { n = 3, nil, tostring(err), code or "error", failure = true }
end

-- Inserts a record's row and, unless it has none, its body; true or nil, err, code.
local function insert_record(conn, key, event, uid, state, received_at, attempts, handlers,
    errors, next_at, lease_until, token, finished_at, expires_at, version, body)
  local insert, err, code = statement(conn, "insert")
  if not (insert and insert:run(key, event, uid, state, received_at, attempts, handlers, errors,
      next_at, lease_until, token, finished_at, expires_at, version)) then
    return nil, err, code
  end
  if body ~= nil then
    local insert_body
    insert_body, err, code = statement(conn, "insert_body")
    if not (insert_body and insert_body:run(body)) then
      return nil, err, code
    end
  end
  return true
end

-- Deletes a record's body (it is done, or removed); true or nil, err, code.
local function drop_body(conn, key)
  local drop, err, code = statement(conn, "drop_body")
  if not (drop and drop:run(key)) then
    return nil, err, code
  end
  return true
end

-- Whether the journal holds no other record of record key's booking: true, false, or nil when
-- it cannot say (a failed read: the router then looks at the booking's records itself).
local function alone(conn, key)
  local others = statement(conn, "others")
  local row = others and others:first(key)
  if not row then
    return nil
  end
  return row.n == 0
end

local ops = {}

-- acquire: as journal.decide says; `token` is the lease's, made by the caller.
function ops.acquire(conn, key, now, lease, new, take_failed, token, max_open)
  local get, err, code = statement(conn, "get")
  if not get then
    return failed(err, code)
  end
  local row
  row, err, code = get:first(key)
  if row == nil then
    return failed(err, code)
  end
  local record = record_of(row or nil)
  local outcome = journal.decide(record, now, new ~= nil, take_failed)
  if outcome == "new" then
    local count = statement(conn, "open_count")
    local open = count and count:first()
    if open and max_open and open.n >= max_open then
      return pack(nil, "journal full: " .. string_format("%d", open.n) .. " deliveries not done"
        .. " (the cap is " .. max_open .. ")", "full")
    end
    record = journal.running(new, now, lease)
    record.token = token
    local changed
    changed, err, code = insert_record(conn, key, new.event or "", new.uid or "", "running",
      new.received_at or now, 1, "{}", "[]", nil, record.lease_until, token, nil, nil, 1, new.body)
    if not changed then
      return failed(err, code)
    end
    record.body = nil   -- the caller has it: not copied back from the thread pool
    return pack("new", record, alone(conn, key))
  elseif outcome == "taken" then
    record = journal.take(record, now, lease)
    record.token = token
    local take
    take, err, code = statement(conn, "take")
    local changed = take and take:run(key, record.attempts, token, record.lease_until,
      record.version)
    if not changed then
      return failed(err, code)
    end
    return pack("taken", record, alone(conn, key))
  end
  return pack(outcome, record)
end

-- update: true, or false when the lease is not the token's.
function ops.update(conn, key, token, changes, now, ttl)
  local update, err, code = statement(conn, "update")
  if not update then
    return failed(err, code)
  end
  local expires_at = changes.expires_at
  if changes.state == "done" and expires_at == nil then
    expires_at = now + ttl
  end
  local changed
  changed, err, code = update:run(key, token, changes.state, encode_handlers(changes.handlers),
    encode_errors(changes.errors), changes.next_at, changes.lease_until, changes.finished_at,
    changes.attempts, expires_at)
  if not changed then
    return failed(err, code)
  end
  if changed == 1 and changes.state == "done" then   -- a done record keeps no body
    local ok
    ok, err, code = drop_body(conn, key)
    if not ok then
      return failed(err, code)
    end
  end
  if changed ~= 1 then
    return pack(false)
  elseif changes.state == nil or changes.state == "running" then
    return pack(true)   -- still running: no look at the booking's other records
  end
  return pack(true, alone(conn, key))
end

-- sweep: removes up to SWEEP_BATCH done records whose time has passed; how many it removed.
function ops.sweep(conn, now)
  local sweep, err, code = statement(conn, "sweep")
  if not (sweep and sweep:run(now)) then
    return failed(err, code)
  end
  return pack(conn.db:changes())
end

-- due: the keys due at now, soonest first.
function ops.due(conn, now, limit)
  local due, err, code = statement(conn, "due")
  local rows = due and due:query(now, limit)
  if not rows then
    return failed(err, code)
  end
  local keys = {}
  for i, row in ipairs(rows) do
    keys[i] = row.key
  end
  return pack(keys)
end

-- The database's schema version (PRAGMA user_version), or nil, err, code (sqlite_db.lua's
-- upgrade reads it too).
function _M.schema_version(db)
  local stmt, err, code = db:prepare("PRAGMA user_version")
  if not stmt then
    return nil, err, code
  end
  local row
  row, err, code = stmt:first()
  stmt:finalize()
  if not row then
    return nil, err or "no user_version", code
  end
  return row.user_version
end

-- check: the folder takes new files for this process, and the database a write (its
-- user_version written again as it is: one page through the WAL, synced with the batch).
function ops.check(conn)
  local core = require "jicoo.webhook.core"
  local dir = string_match(conn.path, "^(.*)/[^/]*$") or "."
  local info, err = core.file_info(dir)
  if not info then
    return pack(nil, "journal " .. dir .. ": " .. tostring(err), "error")
  end
  local uid = core.process_user()
  local bits = uid == 0 and 2 or info.uid == uid and math_floor(info.mode / 128) % 2
    or info.mode % 4 >= 2 and 1 or 0
  if bits == 0 then
    return pack(nil, "journal " .. dir .. ": the folder does not let this process (uid "
      .. uid .. ") make files", "perm")
  end
  local version, code
  version, err, code = _M.schema_version(conn.db)
  if not version then
    return failed(err, code)
  end
  local ok
  ok, err, code = conn.db:exec(string_format("PRAGMA user_version = %d", version))
  if not ok then
    return failed(err, code)
  end
  return pack(true)
end

-- The operations that only read: a batch of nothing else takes no write lock (in WAL mode a
-- reader never waits for a writer), so the scheduler's pass and the operators' questions go on
-- while the deliveries are written.
_M.READS = { due = true, get = true, find = true, counts = true }

function ops.get(conn, key)
  local get, err, code = statement(conn, "get")
  local row = get and get:first(key)
  if row == nil then
    return failed(err, code)
  end
  return pack(record_of(row or nil))
end

-- find: the records that match every filter given, by received_at then key, after `after`
-- (the cursor of a previous page), `limit` of them; and the next page's cursor, or nil. Their
-- bodies too with `bodies` (list's).
function ops.find(conn, filter)
  local conditions, values = {}, {}
  for _, f in ipairs(FILTERS) do
    local value = filter[f.name]
    if value ~= nil then
      conditions[#conditions + 1] = f.sql
      values[#values + 1] = value
    end
  end
  if filter.after then
    conditions[#conditions + 1] = "(received_at > ? OR (received_at = ? AND key > ?))"
    values[#values + 1] = filter.after.received_at
    values[#values + 1] = filter.after.received_at
    values[#values + 1] = filter.after.key
  end
  local limit = filter.limit
  local sql = "SELECT " .. (filter.bodies and WITH_BODY or READ_COLUMNS .. " FROM deliveries")
    .. (#conditions > 0 and " WHERE " .. table_concat(conditions, " AND ") or "")
    .. " ORDER BY received_at, key" .. (limit and " LIMIT " .. string_format("%d", limit + 1) or "")
  local stmt, err, code = conn.db:prepare(sql)
  if not stmt then
    return failed(err, code)
  end
  local rows
  rows, err, code = stmt:query(unpack(values, 1, #values))
  stmt:finalize()
  if not rows then
    return failed(err, code)
  end
  local after
  if limit and #rows > limit then
    rows[#rows] = nil
    after = { received_at = rows[#rows].received_at, key = rows[#rows].key }
  end
  for _, row in ipairs(rows) do
    record_of(row)
  end
  return pack(rows, after)
end

-- counts: { states = { state = n }, events = { event = { state = n } } }.
function ops.counts(conn)
  local tally, err, code = statement(conn, "tally")
  local rows = tally and tally:query()
  if not rows then
    return failed(err, code)
  end
  local states, events = {}, {}
  for _, row in ipairs(rows) do
    states[row.state] = (states[row.state] or 0) + row.n
    local by_state = events[row.event] or {}
    by_state[row.state] = row.n
    events[row.event] = by_state
  end
  return pack({ states = states, events = events })
end

function ops.rearm(conn, key, now)
  local get, err, code = statement(conn, "get")
  local row = get and get:first(key)
  if row == nil then
    return failed(err, code)
  elseif row == false then
    return pack(nil, "not found")
  end
  local record, why = journal.rearmed(record_of(row), now)
  if not record then
    return pack(false, why)
  end
  local rearm
  rearm, err, code = statement(conn, "rearm")
  if not (rearm and rearm:run(key, now, record.budget_from, record.version)) then
    return failed(err, code)
  end
  return pack(record)
end

function ops.remove(conn, key)
  local ok, err, code = drop_body(conn, key)
  if not ok then
    return failed(err, code)
  end
  local remove
  remove, err, code = statement(conn, "remove")
  local changed = remove and remove:run(key)
  if not changed then
    return failed(err, code)
  elseif changed == 0 then
    return pack(nil, "not found")
  end
  return pack(true)
end

-- import: records written whole as they were elsewhere (the file journal's), each kept unless
-- the database has a newer version of it; how many were written.
function ops.import(conn, records)
  local get, err, code = statement(conn, "get")
  local remove = get and statement(conn, "remove")
  if not remove then
    return failed(err, code)
  end
  local written = 0
  for _, r in ipairs(records) do
    local row
    row, err, code = get:first(r.key)
    if row == nil then
      return failed(err, code)
    end
    if not row or (row.version or 0) < (r.version or 0) then
      if row and not (drop_body(conn, r.key) and remove:run(r.key)) then
        return failed("cannot replace " .. r.key)
      end
      local changed
      changed, err, code = insert_record(conn, r.key, r.event or "", r.uid or "", r.state,
        r.received_at or 0, r.attempts or 0, encode_handlers(r.handlers or {}),
        encode_errors(r.errors or {}), r.next_at, r.lease_until, r.token, r.finished_at,
        r.expires_at, r.version or 1, r.state ~= "done" and r.body or nil)
      if not changed then
        return failed(err, code)
      end
      written = written + 1
    end
  end
  return pack(written)
end

_M.ops, _M.failed = ops, failed
return _M
