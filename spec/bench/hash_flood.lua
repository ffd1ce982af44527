-- What strings built to collide in the runtime's string hash cost against random strings of the
-- same length: keys at the default limits, keys with max_key lifted one byte over its default,
-- and string values of that length (which no limit on keys bounds).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/luajit/?.so;;" \
--     luajit spec/bench/hash_flood.lua [--quick]
--
-- Every string a parse returns is interned in the runtime's string table. A hash that reads only
-- some bytes of a long string sends strings that differ elsewhere to one chain, and each new one
-- is compared with all before it. The colliding set varies only bytes the hash skips: LuaJIT
-- (OpenResty's luajit2, x86-64) reads a string of 128 bytes or more as its first and last 8
-- bytes and 8 bytes at a position drawn at startup in each of its first half's sixteenths, so
-- nothing between 5/8 of its length (plus 9) and its last 8 bytes; Lua 5.1 to 5.3 read every
-- ((len >> 5) + 1)-th byte from the end; Lua 5.4 reads every byte. Printed, never judged: the
-- exit status is non-zero only when a call fails.
local webhook = require "jicoo.webhook"

local quick = arg[1] == "--quick"
local clock = os.clock
local concat, char = table.concat, string.char
local floor = math.floor

local is_luajit = rawget(_G, "jit") ~= nil
local runtime = is_luajit and "luajit" or ("lua" .. _VERSION:match("%d+%.%d+"))

-- The byte positions (0-based) the runtime's hash does not read in a string of `len` bytes.
local function unread_positions(len)
  local read = {}
  if is_luajit then
    for i = 0, len - 1 do
      read[i] = not (len >= 128 and i >= floor(len * 5 / 8) + 9 and i < len - 8)
    end
  elseif runtime ~= "lua5.4" then
    local step = floor(len / 32) + 1
    local i = len
    while i >= step do
      read[i - 1] = true
      i = i - step
    end
  else
    for i = 0, len - 1 do
      read[i] = true
    end
  end
  local unread = {}
  for i = 0, len - 1 do
    if not read[i] then
      unread[#unread + 1] = i
    end
  end
  return unread
end

-- n keys of len bytes: colliding ones differ only where the hash does not read (three such
-- bytes count up to 17,576 keys), random ones anywhere.
local function make_keys(n, len, colliding)
  local unread = unread_positions(len)
  local keys = {}
  for i = 1, n do
    local bytes = {}
    if colliding and #unread >= 3 then
      for j = 1, len do
        bytes[j] = "a"
      end
      local v = i
      for k = 1, 3 do
        bytes[unread[k] + 1] = char(97 + v % 26)
        v = floor(v / 26)
      end
    else
      for j = 1, len do
        bytes[j] = char(97 + math.random(0, 25))
      end
    end
    keys[i] = concat(bytes)
  end
  return keys, #unread >= 3
end

-- A delivery keeping the keys under an undocumented key, as objects of at most 1000 keys (the
-- default max_keys is 1024), within the default max_size.
local fixture = [[{"event":"guest_booked","createdAt":"2024-03-01T10:00:05+09:00","object":{
"uid":"bk_flood","eventTypeUid":"et","status":"open","startedAt":"2024-03-05T10:00:00+09:00",
"endedAt":"2024-03-05T11:00:00+09:00","timeZone":"Asia/Tokyo","createdAt":"2024-03-01T10:00:00+09:00",
"updatedAt":"2024-03-01T10:00:00+09:00","contact":{"name":"A","email":"a@example.jp"},
"answers":[],"tracking":{}}}]]

-- The strings as keys (objects of at most 1000 keys: the default max_keys is 1024) or as string
-- values (arrays of at most 10000 items), kept under an undocumented key of a delivery.
local function body_of(strings, as_values)
  local groups, parts = {}, {}
  for i, s in ipairs(strings) do
    parts[#parts + 1] = as_values and '"' .. s .. '"' or '"' .. s .. '":"x"'
    if #parts == 1000 or i == #strings then
      groups[#groups + 1] = as_values and "[" .. concat(parts, ",") .. "]"
        or "{" .. concat(parts, ",") .. "}"
      parts = {}
    end
  end
  return '{"flood":[' .. concat(groups, ",") .. "]," .. fixture:sub(2)
end

local function seconds_of(run, body, opts, calls)
  collectgarbage()
  local start = clock()
  for _ = 1, calls do
    local ev, msg = run(body, opts)
    if not ev then
      io.stderr:write("hash_flood: ", msg, "\n")
      os.exit(1)
    end
  end
  return (clock() - start) / calls
end

local function median(list)
  table.sort(list)
  return list[floor((#list + 1) / 2)]
end

local max_key = webhook.limits.max_key
local rounds, calls = quick and 1 or 5, quick and 1 or 3
print(("%s: strings built to collide in the string hash, against random ones of the same length"
  .. " (parse of one delivery holding them, about 1 MiB unless --quick)"):format(runtime))
for _, case in ipairs({
  { len = max_key, what = "keys, default limits" },
  { len = max_key + 1, opts = { max_key = max_key + 1 }, what = "keys, max_key lifted" },
  { len = max_key + 1, as_values = true, what = "string values" },
}) do
  local n = floor((webhook.limits.max_size - 8192) / (case.len + (case.as_values and 3 or 7)))
  n = quick and math.min(n, 500) or n
  local colliding, collides = make_keys(n, case.len, true)
  local random = make_keys(n, case.len, false)
  local bodies = { body_of(random, case.as_values), body_of(colliding, case.as_values) }
  local times = { {}, {} }
  for _ = 1, rounds do   -- interleaved, so both see the same machine
    for i = 1, 2 do
      times[i][#times[i] + 1] = seconds_of(webhook.parse, bodies[i], case.opts, calls)
    end
  end
  local random_s, colliding_s = median(times[1]), median(times[2])
  print(("  %-21s %5d of %3d bytes: random %8.2f ms, colliding %8.2f ms: %6.2fx%s"):format(
    case.what, n, case.len, random_s * 1e3, colliding_s * 1e3, colliding_s / random_s,
    collides and "" or " (this hash reads every byte: no set to build)"))
end
