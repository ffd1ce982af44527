-- What the runtime offers the network code: whether nginx's cosockets work here, LuaSocket and
-- LuaSec where they do not, a clock and a sleep that never block an nginx worker, and tables made
-- at their size.
-- jicoo.net.socket gives these to its callers (socket.now, socket.sleep, ...).
local type = type
local pcall = pcall
local rawget = rawget
local require = require
local os_time = os.time
local os_execute = os.execute
local string_format = string.format

local _M = {}

-- The nginx phases in which ngx.socket.tcp works.
local COSOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, preread = true,
}

-- Whether this code runs where nginx's cosockets work now.
function _M.has_cosockets()
  local ngx = rawget(_G, "ngx")
  if ngx == nil or type(ngx.socket) ~= "table" or ngx.socket.tcp == nil then
    return false
  end
  return not ngx.get_phase or COSOCKET_PHASES[ngx.get_phase()] == true
end

-- LuaSocket (and, for TLS, LuaSec), or nil and what to install.
function _M.luasocket(tls)
  local ok, socket = pcall(require, "socket")
  if not ok or type(socket) ~= "table" then
    return nil, "needs LuaSocket (require \"socket\"; on Debian the package lua-socket)"
  end
  if tls then
    local has_ssl, ssl = pcall(require, "ssl")
    if not has_ssl or type(ssl) ~= "table" then
      return nil, "needs LuaSec for TLS (require \"ssl\"; on Debian the package lua-sec)"
    end
    return socket, ssl
  end
  return socket
end

-- Waits, yielding to nginx where it can (ngx.sleep), else in LuaSocket's sleep.
function _M.sleep(seconds)
  if seconds <= 0 then
    return
  end
  if _M.has_cosockets() then
    rawget(_G, "ngx").sleep(seconds)
    return
  end
  local socket = _M.luasocket()
  if socket then
    socket.sleep(seconds)
    return
  end
  os_execute(string_format("sleep %.3f", seconds))   -- no LuaSocket (a transport of one's own)
end

-- A table with room for narr list items and nrec fields at once (a table that grows is
-- rehashed on the way): LuaJIT's table.new, which OpenResty's has; an empty table elsewhere.
local ok_new, table_new = pcall(require, "table.new")
_M.new_table = ok_new and table_new or function()
  return {}
end

-- Seconds now, with a fraction where the runtime has one.
function _M.now()
  local ngx = rawget(_G, "ngx")
  if ngx and ngx.now then
    ngx.update_time()
    local now = ngx.now()
    return now   -- not a tail call of a built-in (spec/jit_trace.lua)
  end
  local socket = _M.luasocket()
  if socket then
    return socket.gettime()
  end
  return os_time()
end

return _M
