-- Moving a file journal (the embedded journal before SQLite) into the SQLite journal: its
-- records are read from DIR/open, DIR/done and DIR/dead (one JSON record a file), written into
-- the database in one transaction, and only then removed with the folders they were in (and
-- DIR/locks). A copy in two folders (a crash between a move's two steps) counts once, the
-- higher version. Files that are not records, links, FIFOs and records over MAX_RECORD bytes are
-- left where they are and reported. Runs where the database is opened (journal/sqlite_db.lua):
-- in plain Lua for `jicoo-webhook deliveries import`, in nginx's thread pool for the receiver.
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring

local core = require "jicoo.webhook.core"
local journal = require "jicoo.webhook.journal"
local sqlite_db = require "jicoo.webhook.journal.sqlite_db"

local _M = {}

local FOLDERS = { "open", "done", "dead" }
local STATES = { running = true, failed = true, done = true, dead = true }
_M.MAX_RECORD = 64 * 1024 * 1024

-- Whether DIR holds a file journal's folders.
function _M.present(dir)
  for _, folder in ipairs(FOLDERS) do
    local info = core.file_info(dir .. "/" .. folder)
    if info and info.kind == "folder" then
      return true
    end
  end
  return false
end

-- The records of the file journal in DIR (the newest copy of each key), the files they came
-- from, and the problems: { { file = path, message = why }, ... }.
function _M.read(dir)
  local newest, files, problems = {}, {}, {}
  for _, folder in ipairs(FOLDERS) do
    local path = dir .. "/" .. folder
    local listing = core.file_list(path)
    for name in pairs(listing or {}) do
      local file = path .. "/" .. name
      local info, err = core.file_info(file)
      local text
      if not info then
        problems[#problems + 1] = { file = file, message = err }
      elseif info.kind ~= "file" then
        problems[#problems + 1] = { file = file, message = "a " .. info.kind .. ", not a record" }
      elseif info.size > _M.MAX_RECORD then
        problems[#problems + 1] = { file = file, message = "over " .. _M.MAX_RECORD .. " bytes" }
      elseif name:match("%.json$") then
        text, err = core.file_read(file)
        local record = text and journal.decode_json(text)
        if type(record) ~= "table" or type(record.key) ~= "string" or not STATES[record.state]
            or type(record.version) ~= "number" then
          problems[#problems + 1] = { file = file, message = text and "not a journal record"
            or tostring(err) }
        else
          files[#files + 1] = file
          local seen = newest[record.key]
          if not seen or seen.version < record.version then
            newest[record.key] = record
          end
        end
      end
    end
  end
  local records = {}
  for _, record in pairs(newest) do
    records[#records + 1] = record
  end
  return records, files, problems
end

-- Removes the files imported, then each folder left empty and the locks.
local function clear(dir, files)
  for _, file in ipairs(files) do
    os.remove(file)
  end
  local locks = dir .. "/locks"
  for name in pairs(core.file_list(locks) or {}) do
    local info = core.file_info(locks .. "/" .. name)
    if info and info.kind == "file" then
      os.remove(locks .. "/" .. name)
    end
  end
  for _, folder in ipairs({ "open", "done", "dead", "locks" }) do
    os.remove(dir .. "/" .. folder)   -- only an empty folder goes
  end
end

-- Imports the file journal in from_dir into the SQLite journal in dir (settings as
-- sqlite_db.connect takes them): records read, records written (those the database did not
-- have in a newer version), the problems; or nil, err when the database failed (nothing is
-- removed then).
function _M.run(from_dir, dir, settings)
  local records, files, problems = _M.read(from_dir)
  local result = sqlite_db.batch(dir, settings, { { "import", records, n = 2 } })[1]
  if result.failure then
    return nil, result[2]
  end
  clear(from_dir, files)
  return #records, result[1], problems
end

return _M
