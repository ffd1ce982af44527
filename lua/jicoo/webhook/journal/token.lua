-- Tokens that tell apart the holders of one claim or lease, across nginx workers and machines:
-- random bytes read once per process, the process id, and a counter.
local rawget = rawget
local tostring = tostring
local tonumber = tonumber
local string_format = string.format
local io_open = io.open

local _M = {}

local prefix, prefix_pid, count = nil, nil, 0

-- This process's id: nginx's worker (a worker forked from the master must not share the
-- master's tokens), or the one id of a plain-Lua process, read once.
local plain_pid
local function process_id()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.worker and ngx.worker.pid then
    local pid = ngx.worker.pid()
    return pid   -- not a tail call of a built-in (spec/jit_trace.lua)
  end
  if not plain_pid then
    local stat = io_open("/proc/self/stat")
    plain_pid = stat and tonumber(stat:read("*l"):match("^(%d+)")) or 0
    if stat then
      stat:close()
    end
  end
  return plain_pid
end

local function byte_hex(c)
  return string_format("%02x", c:byte())
end

local function new_prefix(pid)
  local random = io_open("/dev/urandom", "rb")
  local bytes = random and random:read(6) or tostring({}):sub(-6)
  if random then
    random:close()
  end
  return (bytes:gsub(".", byte_hex)) .. "-" .. tostring(pid) .. "-"
end

function _M.new()
  local pid = process_id()
  if pid ~= prefix_pid then
    prefix, prefix_pid = new_prefix(pid), pid
  end
  count = count + 1
  return prefix .. count
end

return _M
