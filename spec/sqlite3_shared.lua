-- What the sqlite3 specs share (sqlite3_spec, sqlite3_errors_spec, sqlite3_files_spec): a folder
-- of their own under /tmp for the databases they make, fresh names in it, a new database, shell
-- commands that must succeed, and whether this process is root.
local sqlite3 = require "jicoo.webhook.sqlite3"
local support = require "support"

local q = support.quote
local IS_ROOT = support.run("id -u") == "0\n"

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

local function sh(command)
  local out, ok = support.run(command .. " 2>&1")
  assert(ok, command .. ": " .. out)
  return out
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

-- The spec's folder: made by its setup (it returns the path), removed by its teardown.
local function make_dir()
  dir = (assert(support.run("mktemp -d /tmp/jicoo-sqlite3.XXXXXX")):gsub("%s+$", ""))
  return dir
end

local function remove_dir()
  if dir and dir:match("^/tmp/jicoo%-sqlite3%.") then
    support.run("chmod -R u+rwx " .. q(dir) .. "; rm -rf " .. q(dir))
  end
end

return {
  IS_ROOT = IS_ROOT,
  make_dir = make_dir,
  remove_dir = remove_dir,
  new_path = new_path,
  exists = exists,
  sh = sh,
  new_db = new_db,
}
