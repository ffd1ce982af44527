-- The file journal: one JSON file per delivery in a folder of the local file system, for one
-- machine (every nginx worker on it, and the command line). Durable: each change is written to a
-- temp file, synced, renamed over the record and the folder synced (core.file_replace), so a
-- crash at any point leaves the old record or the new one, whole.
--
--   DIR/open/NAME.json   running and failed deliveries: what the scheduler reads
--   DIR/done/NAME.json   done ones, without their body, removed once their ttl has passed
--   DIR/dead/NAME.json   dead letters, until an operator retries or drops them
--   DIR/locks/NN         64 lock files: a record changes only under its lock (flock, which
--                        the kernel gives back when its holder dies)
--
-- NAME is the key with every byte but A-Z a-z 0-9 . _ - written %XX (a key whose name would be
-- over 200 bytes: its first 120 bytes, "~" and the SHA-256 of the key). A record moving to
-- another folder is written there first and removed from the old one after; if a crash comes
-- in between, the copy with the higher version wins and the next change removes the other
-- (so a removal does not wait for its folder to be synced: each change costs two syncs, of the
-- file and of its folder, whether the record moves or not).
-- Calls block the worker for the few file system calls they make (fsync included): that is what
-- being durable costs on one machine; Redis is the journal that does not.
local setmetatable = setmetatable
local type = type
local error = error
local pcall = pcall
local pairs = pairs
local ipairs = ipairs
local string_byte = string.byte
local string_format = string.format
local string_gsub = string.gsub
local string_sub = string.sub
local table_sort = table.sort

local core = require "jicoo.webhook.core"
local json = require "jicoo.webhook.json"
local journal = require "jicoo.webhook.journal"
local store = require "jicoo.webhook.store"

local _M = {}

local FOLDERS = { "open", "done", "dead" }
local FOLDER_OF = { running = "open", failed = "open", done = "done", dead = "dead" }
local LOCKS = 64
local SWEEP_EVERY = 60           -- seconds between two sweeps of expired done records
local STALE_TEMP = 3600          -- a temp file this old was left by a crash

local Files = {}
Files.__index = Files
Files.__name = "jicoo.webhook.journal.files"   -- store.is_ours: it returns, never raises, on failure

function _M.new(opts)
  if type(opts) ~= "table" or type(opts.dir) ~= "string" or opts.dir == "" then
    error("journal.files: opts.dir (the journal's folder) is required", 3)
  end
  local dir = string_sub(opts.dir, -1) == "/" and string_sub(opts.dir, 1, -2) or opts.dir
  local ttl = opts.ttl or store.DEFAULT_TTL
  if type(ttl) ~= "number" or ttl <= 0 then
    error("journal.files: opts.ttl must be a positive number of seconds", 3)
  end
  return setmetatable({
    dir = dir,
    ttl = ttl,
    ready = false,     -- the folders exist
    swept_at = 0,
    durable = true,
  }, Files)
end

local function hex(s)
  return (string_gsub(s, ".", function(c) return string_format("%02x", string_byte(c)) end))
end

local function escape_byte(c)
  return string_format("%%%02X", string_byte(c))
end

local function file_name(key)
  local name = string_gsub(key, "[^A-Za-z0-9._-]", escape_byte)
  if #name > 200 then
    name = string_sub(name, 1, 120) .. "~" .. hex(core.hmac_sha256("jicoo-webhook journal", key))
  end
  return name
end

local function lock_number(name)
  local h = 0
  for i = 1, #name do
    h = (h * 31 + string_byte(name, i)) % LOCKS
  end
  return h
end

-- The folders, made on first use: a folder that cannot be made is each call's error, not the
-- constructor's, so that nginx starts and answers 500 naming it.
local function ensure_folders(self)
  if self.ready then
    return true
  end
  local ok, err = core.file_mkdir(self.dir)
  for _, folder in ipairs({ "open", "done", "dead", "locks" }) do
    if not ok then
      break
    end
    ok, err = core.file_mkdir(self.dir .. "/" .. folder)
  end
  if not ok then
    return nil, "file journal: " .. err
  end
  self.ready = true
  return true
end

local function path_of(self, folder, name)
  return self.dir .. "/" .. folder .. "/" .. name .. ".json"
end

local ENOENT = 2

-- The record in one file: the record, false when there is no file, or nil, err.
local function read_file(path)
  local text, read_err, errno = core.file_read(path)
  if not text then
    if errno == ENOENT then
      return false
    end
    return nil, "file journal: " .. read_err
  end
  local record, msg = journal.decode_json(text)
  if type(record) ~= "table" or type(record.key) ~= "string" or not FOLDER_OF[record.state]
      or type(record.version) ~= "number" then
    return nil, "corrupt record " .. path .. ": " .. (msg or "not a journal record")
  end
  return record
end

-- The newest copy of key's record (false when there is none) and the folders holding a copy;
-- or nil, err when a copy cannot be read.
local function read(self, key, name)
  local newest, found = false, {}
  for _, folder in ipairs(FOLDERS) do
    local path = path_of(self, folder, name)
    local record, err = read_file(path)
    if record == nil then
      return nil, err
    elseif record then
      if record.key ~= key then
        return nil, "corrupt record " .. path .. ": holds " .. record.key .. ", not " .. key
      end
      found[#found + 1] = folder
      if not newest or record.version > newest.version then
        newest = record
      end
    end
  end
  return newest, found
end

-- Writes record to the folder of its state and removes the copies elsewhere.
local function write(self, record, name, found)
  local folder = FOLDER_OF[record.state]
  if record.state == "done" then
    record.body = nil
  end
  local ok, err = core.file_replace(path_of(self, folder, name), json.encode(record))
  if not ok then
    return nil, "file journal: " .. err
  end
  for _, other in ipairs(found) do
    if other ~= folder then
      -- not synced: should a crash bring the old copy back, the new one's higher version wins
      ok, err = core.file_remove(path_of(self, other, name), false)
      if not ok then
        return nil, "file journal: " .. err
      end
    end
  end
  return true
end

-- Runs fn(name) with key's lock held; the lock is given back however fn ends.
local function locked(self, key, fn)
  local ready, ready_err = ensure_folders(self)
  if not ready then
    return nil, ready_err
  end
  local name = file_name(key)
  local lock, err = core.file_lock(string_format("%s/locks/%02d", self.dir, lock_number(name)))
  if not lock then
    return nil, "file journal: " .. err
  end
  local ok, a, b = pcall(fn, name)
  lock:unlock()
  if not ok then
    error(a, 0)
  end
  return a, b
end

function Files:acquire(key, now, lease, new, take_failed)
  return locked(self, key, function(name)
    local record, found = read(self, key, name)
    if record == nil then
      return nil, found
    end
    local outcome = journal.decide(record or nil, now, new ~= nil, take_failed)
    if outcome == "new" then
      record = journal.running(new, now, lease)
    elseif outcome == "taken" then
      journal.take(record, now, lease)
    else
      return outcome, record
    end
    local ok, err = write(self, record, name, found)
    if not ok then
      return nil, err
    end
    return outcome, record
  end)
end

function Files:update(key, token, changes, now)
  return locked(self, key, function(name)
    local record, found = read(self, key, name)
    if record == nil then
      return nil, found
    end
    if not record or record.state ~= "running" or record.token ~= token then
      return false
    end
    for field, value in pairs(changes) do
      record[field] = value
    end
    record.version = record.version + 1
    if record.state == "done" and not record.expires_at then
      record.expires_at = (now or 0) + self.ttl
    end
    return write(self, record, name, found)
  end)
end

local function json_names(listing)
  local names = {}
  for name in pairs(listing) do
    if string_sub(name, -5) == ".json" then
      names[#names + 1] = string_sub(name, 1, -6)
    end
  end
  table_sort(names)
  return names
end

-- Done records past their ttl (by the time their file was written, which is when they were
-- done) and temp files left by a crash go, once a minute at most.
local function sweep(self, now)
  if now - self.swept_at < SWEEP_EVERY then
    return
  end
  self.swept_at = now
  for _, folder in ipairs(FOLDERS) do
    local listing = core.file_list(self.dir .. "/" .. folder) or {}
    for name, mtime in pairs(listing) do
      if string_sub(name, -4) == ".tmp" and mtime + STALE_TEMP <= now then
        core.file_remove(self.dir .. "/" .. folder .. "/" .. name)
      end
    end
    if folder == "done" then
      for _, name in ipairs(json_names(listing)) do
        if listing[name .. ".json"] + self.ttl <= now then
          local record = read_file(path_of(self, "done", name))
          if record and record.state == "done" and (record.expires_at or 0) <= now then
            locked(self, record.key, function()
              local again = read_file(path_of(self, "done", name))
              if again and again.version == record.version then
                core.file_remove(path_of(self, "done", name), false)
              end
            end)
          end
        end
      end
    end
  end
end

-- The keys due at now (at most limit), and the problems met: { { file =, error = }, ... }.
function Files:due(now, limit)
  local ready, ready_err = ensure_folders(self)
  if not ready then
    return nil, ready_err
  end
  local listing, err = core.file_list(self.dir .. "/open")
  if not listing then
    return nil, "file journal: " .. err
  end
  local keys, problems = {}, {}
  for _, name in ipairs(json_names(listing)) do
    if #keys >= limit then
      break
    end
    local path = path_of(self, "open", name)
    local record, read_err = read_file(path)
    if record == nil then
      problems[#problems + 1] = { file = path, error = read_err }
    elseif record and journal.is_due(record, now) then
      keys[#keys + 1] = record.key
    end
  end
  sweep(self, now)
  return keys, problems
end

function Files:get(key)
  local ready, ready_err = ensure_folders(self)
  if not ready then
    return nil, ready_err
  end
  local record, err = read(self, key, file_name(key))
  if record == nil then
    return nil, err
  end
  return record or nil
end

function Files:list(state)
  local ready, ready_err = ensure_folders(self)
  if not ready then
    return nil, ready_err
  end
  local folders = state == "all" and FOLDERS or { FOLDER_OF[state] }
  if not folders[1] then
    error("journal:list: state must be one of running, failed, done, dead, all", 2)
  end
  local list = {}
  for _, folder in ipairs(folders) do
    local listing, err = core.file_list(self.dir .. "/" .. folder)
    if not listing then
      return nil, "file journal: " .. err
    end
    for _, name in ipairs(json_names(listing)) do
      local path = path_of(self, folder, name)
      local record, read_err = read_file(path)
      if record == nil then
        list[#list + 1] = { state = "corrupt", file = path, error = read_err }
      elseif record and (state == "all" or record.state == state) then
        list[#list + 1] = record
      end
    end
  end
  return list
end

function Files:rearm(key, now)
  return locked(self, key, function(name)
    local record, found = read(self, key, name)
    if record == nil then
      return nil, found
    elseif not record then
      return nil, "not found"
    end
    local rearmed, why = journal.rearmed(record, now)
    if not rearmed then
      return false, why
    end
    local ok, err = write(self, rearmed, name, found)
    if not ok then
      return nil, err
    end
    return rearmed
  end)
end

function Files:remove(key)
  return locked(self, key, function(name)
    local removed = false
    for _, folder in ipairs(FOLDERS) do
      local path = path_of(self, folder, name)
      if read_file(path) ~= false then   -- a copy there (readable or not)
        local ok, err = core.file_remove(path)
        if not ok then
          return nil, "file journal: " .. err
        end
        removed = true
      end
    end
    if not removed then
      return nil, "not found"
    end
    return true
  end)
end

_M.file_name = file_name

return _M
