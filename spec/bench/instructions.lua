-- Instructions per call, counted by callgrind (docs/performance.md): parse, its floor and
-- cjson.decode on each valid fixture, Lua 5.x. Each count is the difference between a run of
-- FEW calls and one of MANY, divided by the calls between them, so that loading Lua and the
-- modules cancels out; the collector's work is counted, as it is paid.
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lua5.4/?.so;;" \
--     lua5.4 spec/bench/instructions.lua [--quick]
--
-- Needs valgrind. The same script, run with --row ROW --file FILE --calls N, is what runs
-- under callgrind.
local FEW, MANY = 200, 1200

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function option(name)
  for i = 1, #arg - 1 do
    if arg[i] == name then
      return arg[i + 1]
    end
  end
end

local row = option("--row")
if row then
  -- under callgrind: the row's calls and nothing else
  local body = read_file(option("--file"))
  local webhook = require "jicoo.webhook"
  local f
  if row == "parse" then
    f = function() return webhook.parse(body) end
  elseif row == "floor" then
    f = require("floor").compile(webhook.parse(body))
  else
    local decode = require("cjson").decode
    f = function() return decode(body) end
  end
  local kept = {}
  for i = 1, tonumber(option("--calls")) do
    kept[i % 8] = f()
  end
  return #kept
end

local quick = arg[1] == "--quick"
if quick then
  FEW, MANY = 2, 12
end
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local interpreter = arg[-1] or "lua"

local function collected(name, file, calls)
  local command = string.format("valgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s"
    .. " --row %s --file %s --calls %d 2>&1", interpreter, arg[0], name, file, calls)
  local p = assert(io.popen(command))
  local out = p:read("*a")
  p:close()
  local n = out:match("Collected : (%d+)")
  if not n then
    io.stderr:write("instructions: valgrind said:\n", out)
    os.exit(1)
  end
  return tonumber(n)
end

local ROWS = { "parse", "floor", "cjson" }
local fixtures = here .. "/../fixtures/valid"
local names = {}
local p = assert(io.popen('ls -1 "' .. fixtures .. '"'))
for name in p:lines() do
  if name:find("%.json$") and (not quick or name == "guest_cancelled.json") then
    names[#names + 1] = name
  end
end
p:close()
table.sort(names)

local runtime = "lua" .. _VERSION:match("%d+%.%d+")
print()
print(string.format("Instructions per call (callgrind, %s; %d calls less %d)%s:", runtime, MANY,
  FEW, quick and " QUICK: not meaningful" or ""))
print()
print("| payload | bytes | parse | floor | cjson.decode | parse / floor |")
print("|---------|------:|------:|------:|-------------:|--------------:|")
local target
for _, name in ipairs(names) do
  local file = fixtures .. "/" .. name
  local per = {}
  for _, r in ipairs(ROWS) do
    per[r] = (collected(r, file, MANY) - collected(r, file, FEW)) / (MANY - FEW)
  end
  print(string.format("| %s | %d | %.0f | %.0f | %.0f | %.2f |", name:gsub("%.json$", ""),
    #read_file(file), per.parse, per.floor, per.cjson, per.parse / per.floor))
  if name == "guest_cancelled.json" then
    target = per.parse
  end
end
if target and runtime == "lua5.4" then
  print()
  print(string.format("Target%s:\n  %-8s %-58s %.0f (at most 30000)", quick and " (quick)" or "",
    target <= 30000 and "met" or "NOT MET", "lua5.4 instructions per parse of guest_cancelled",
    target))
end
