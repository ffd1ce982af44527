-- What the specs share: where the repository and its fixtures are, reading files, the fixture
-- lists, shell commands.
local support = {}

-- The folder this file is in, as an absolute path: found from the file's own name, so the specs
-- find their fixtures from any working directory, and a path handed to a child process that
-- runs elsewhere still names the same file.
local function spec_folder()
  local source = debug.getinfo(1, "S").source
  local folder = source:match("^@(.*)/[^/]*$") or "."
  if folder:sub(1, 1) ~= "/" then
    local pipe = assert(io.popen("pwd"))
    local cwd = assert(pipe:read("*l"))
    pipe:close()
    folder = folder == "." and cwd or cwd .. "/" .. (folder:gsub("^%./", ""))
  end
  return folder
end

local here = spec_folder()
support.root = here:match("^(.*)/spec$") or here .. "/.."
-- The vendored fixtures, JSONTestSuite and published schema (spec/fixtures/README.md).
support.fixtures = support.root .. "/spec/fixtures"

function support.read(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

function support.write(path, data)
  local file = assert(io.open(path, "wb"))
  file:write(data)
  file:close()
end

-- The lines a shell command prints, and whether it succeeded.
function support.run(command)
  local pipe = assert(io.popen(command .. "; echo \"exit:$?\""))
  local out = pipe:read("*a")
  pipe:close()
  local body, status = out:match("^(.-)exit:(%d+)%s*$")
  return body, tonumber(status) == 0
end

function support.quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The names of the files in a folder that match a Lua pattern, sorted.
function support.list(folder, pattern)
  local names = {}
  local out = assert(support.run("ls -1 " .. support.quote(folder)))
  for name in out:gmatch("[^\n]+") do
    if name:match(pattern) then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  return names
end

-- The rows of a fixtures folder's expect.tsv: { file =, level =, code =, path = }.
-- The path column holds '-' for none and '""' for the root.
function support.expectations(folder)
  local rows = {}
  for line in support.read(support.fixtures .. "/" .. folder .. "/expect.tsv"):gmatch("[^\n]+") do
    if not line:match("^#") then
      local file, level, code, path = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)")
      if path == "-" then
        path = nil
      elseif path == '""' then
        path = ""
      end
      rows[#rows + 1] = { file = file, level = level, code = code, path = path }
    end
  end
  return rows
end

-- A temporary file's path, removed by the caller.
function support.tmpname()
  return os.tmpname()
end

-- What the HTTP client's specs need and this machine lacks (nginx and openssl through
-- spec/servers.lua, LuaSocket, LuaSec), as names to print; empty when nothing is missing.
function support.missing_http_client()
  local missing = {}
  local ok_servers, servers = pcall(require, "servers")
  if not ok_servers then
    missing[#missing + 1] = "spec/servers.lua"
  else
    for _, what in ipairs(servers.missing(false)) do
      missing[#missing + 1] = what
    end
  end
  if not pcall(require, "socket") then missing[#missing + 1] = "LuaSocket (lua-socket)" end
  if not pcall(require, "ssl") then missing[#missing + 1] = "LuaSec (lua-sec)" end
  return missing
end

-- Unmounts a tmpfs a spec mounted: again for up to 3 s while it is busy (a process that held a
-- file on it is ending), then lazily, so that no mount outlives the spec.
function support.unmount(mount)
  for _ = 1, 30 do
    local _, ok = support.run("umount " .. support.quote(mount) .. " 2>/dev/null")
    if ok then
      return true
    end
    support.run("sleep 0.1")
  end
  local _, ok = support.run("umount -l " .. support.quote(mount))
  return ok
end

return support
