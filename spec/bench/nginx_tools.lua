-- What the nginx benchmarks share (nginx.sh, journal.sh): shell commands, medians, signed
-- deliveries for wrk, a bounded wrk run, a process's CPU time.
local support = require "support"
local servers = require "servers"

local quote = support.quote

local _M = {}

function _M.sh(command)
  local out, ok = support.run(command)
  return out or "", ok
end
local sh = _M.sh

function _M.trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end
local trim = _M.trim

function _M.median(list)
  local sorted = {}
  for i, v in ipairs(list) do
    sorted[i] = v
  end
  table.sort(sorted)
  local n = #sorted
  if n == 0 then
    return nil
  end
  if n % 2 == 1 then
    return sorted[(n + 1) / 2]
  end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

-- The value at a fraction (0.99: the 99th percentile) of a list of numbers.
function _M.percentile(list, fraction)
  local sorted = {}
  for i, v in ipairs(list) do
    sorted[i] = v
  end
  table.sort(sorted)
  if #sorted == 0 then
    return nil
  end
  return sorted[math.max(1, math.ceil(fraction * #sorted))]
end

-- `count` distinct deliveries for nginx_wrk.lua, in a file it reads: the four example deliveries
-- made compact, each copy with its own object uid (so its own idempotency key), t = now, signed
-- by openssl (one run per xargs batch) over "t." .. body files in sign_dir (a tmpfs folder when
-- there is one: 10^5 files on a disk are slow). The uid is moved to the end of the body:
-- LuaJIT (this one, and wrk's) hashes a long string from a few sampled bytes, its ends among
-- them, and 10^5 live strings that differ only in the middle land in one hash chain (interning
-- them all takes minutes). Returns the file and the bodies' mean size.
function _M.make_deliveries(sign_dir, secret, count, uid_prefix)
  local templates = {}
  local folder = servers.root .. "/examples/openresty/deliveries"
  for _, name in ipairs(support.list(folder, "%.json$")) do
    local text, n = support.read(folder .. "/" .. name):gsub("\n%s*", ""):gsub(
      '"uid":%s*"[^"]*",', "", 1)
    assert(n == 1 and text:match("}}$"), name .. ": no object uid, or object not last")
    templates[#templates + 1] = text:sub(1, -3) .. ',"uid":"' .. (uid_prefix or "bench_")
      .. '%d"}}'
  end
  local function body(i)
    return templates[(i - 1) % #templates + 1]:format(i)
  end
  local t = os.time()
  for i = 1, count do
    support.write(sign_dir .. "/" .. i, t .. "." .. body(i))
  end
  -- openssl prints "<hex> *<file>" per file; xargs batches keep the command lines short.
  local out, ok = sh("cd " .. quote(sign_dir) .. " && seq 1 " .. count
    .. " | xargs openssl dgst -sha256 -hmac " .. quote(secret) .. " -r")
  assert(ok, "openssl failed: " .. out:sub(1, 500))
  local hexes = {}
  for line in out:gmatch("[^\n]+") do
    local hex, name = line:match("^(%x+) %*?(%d+)$")
    if hex then
      hexes[tonumber(name)] = hex
    end
  end
  sh("cd " .. quote(sign_dir) .. " && seq 1 " .. count .. " | xargs rm -f")
  local data = sign_dir .. "/deliveries-" .. (uid_prefix or "bench_") .. ".data"
  local file = assert(io.open(data, "wb"))
  local size = 0
  for i = 1, count do
    assert(hexes[i] and #hexes[i] == 64, "openssl did not sign delivery " .. i)
    local b = body(i)
    size = size + #b
    file:write("t=", t, ",v1=", hexes[i], "\n", #b, "\n", b)
  end
  file:close()
  return data, math.floor(size / count + 0.5)
end

-- One wrk run against url, bounded twice: wrk's -d and coreutils' timeout; its pid in
-- dir/wrk.pid (or `name`.pid) for the caller's trap. script: nginx_wrk.lua and its data file,
-- or nil for GETs. Returns { out, requests, rate, non2xx, errors, failed, latencies }.
function _M.wrk(dir, url, seconds, data, threads, connections, name)
  name = name or "wrk"
  local pid_file = dir .. "/" .. name .. ".pid"
  local out_file = dir .. "/" .. name .. ".out"
  local script = data and (" -s " .. quote(servers.spec_dir .. "/bench/nginx_wrk.lua")) or ""
  local command = "timeout -k 5 " .. (seconds + 60) .. " " .. quote(servers.wrk)
    .. " -t" .. threads .. " -c" .. connections .. " -d" .. seconds .. "s --timeout 5s --latency"
    .. script .. " " .. quote(url) .. (data and (" -- " .. quote(data) .. " " .. threads) or "")
  sh("(" .. command .. ") >" .. quote(out_file) .. " 2>&1 & echo $! >" .. quote(pid_file)
    .. "; wait $!")
  os.remove(pid_file)
  local out = support.read(out_file)
  local r = {
    out = out,
    requests = tonumber(out:match("(%d+) requests in")),
    rate = tonumber(out:match("Requests/sec:%s+([%d%.]+)")),
    non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s+(%d+)") or "0"),
    errors = 0,
  }
  local socket = out:match("Socket errors:([^\n]*)")
  if socket then
    for n in socket:gmatch("%d+") do
      r.errors = r.errors + tonumber(n)
    end
  end
  if not r.requests or not r.rate then
    r.failed = true
  end
  return r
end

-- A latency wrk printed (its --latency table: "99%  12.34ms"), in milliseconds.
function _M.latency(out, percent)
  local value, unit = out:match("%s" .. percent .. "%%%s+([%d%.]+)(%a+)")
  if not value then
    return nil
  end
  local scale = { us = 0.001, ms = 1, s = 1000, m = 60000 }
  return tonumber(value) * (scale[unit] or 1)
end

-- A process's CPU time so far, in seconds (utime + stime from /proc/PID/stat).
local CLK_TCK = tonumber(trim(sh("getconf CLK_TCK"))) or 100

function _M.process_cpu(pid)
  local file = pid and io.open("/proc/" .. pid .. "/stat")
  if not file then
    return nil
  end
  local line = file:read("*l")
  file:close()
  local fields = {}
  for field in line:match("%) (.*)$"):gmatch("%S+") do
    fields[#fields + 1] = field
  end
  -- After "(comm) ": state is field 3 of stat, utime 14 and stime 15.
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

return _M
