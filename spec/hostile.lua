-- A hostile peer for the HTTP and Redis clients' specs: a server on 127.0.0.1 that answers what
-- a request names with a misbehaviour (a line that never ends, a byte every so often, framing
-- that lies, a reply nested 200,000 arrays deep, ...). Run as its own process:
--
--   lua spec/hostile.lua PORT_FILE LOG_FILE SECONDS
--
-- It listens on a free port and writes it to PORT_FILE, serves connections at once (one
-- coroutine each), appends what it saw to LOG_FILE (one line an event: "request <line>",
-- "raw <request head, escaped>", "sent <behaviour> <bytes>", "connection <n>") and stops by
-- itself after SECONDS. An HTTP request's path names the behaviour (GET /drip-headers); so does
-- a Redis command's first argument (GET deep), and a sentinel's question its master's name
-- (SENTINEL get-master-addr-by-name garbage-host). Anything else is answered plainly.
local socket = require "socket"

local port_file, log_file, lifetime = arg[1], arg[2], tonumber(arg[3] or "120")

local log = assert(io.open(log_file, "ab"))
log:setvbuf("line")
local function note(...)
  log:write(table.concat({ ... }, " "), "\n")
end

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, own_port = server:getsockname()
do
  local port = own_port
  local file = assert(io.open(port_file .. ".tmp", "wb"))
  file:write(port)
  file:close()
  assert(os.rename(port_file .. ".tmp", port_file))
end

local MiB = 1024 * 1024
local waiting_read, waiting_write = {}, {}   -- socket -> coroutine

-- I/O for the connection's coroutine: waits by yielding to the loop below.
local Peer = {}
Peer.__index = Peer

function Peer:receive(pattern)
  local parts = {}
  while true do
    local data, err, partial = self.sock:receive(pattern)
    if data then
      return table.concat(parts) .. data
    end
    if err ~= "timeout" then
      return nil, err
    end
    if partial and partial ~= "" then
      parts[#parts + 1] = partial
      if type(pattern) == "number" then
        pattern = pattern - #partial
      end
    end
    waiting_read[self.sock] = coroutine.running()
    coroutine.yield()
  end
end

function Peer:send(data)
  local from = 1
  while from <= #data do
    local last, err, partial = self.sock:send(data, from)
    if last then
      return true
    end
    if err ~= "timeout" then
      return nil, err
    end
    from = partial + 1
    waiting_write[self.sock] = coroutine.running()
    coroutine.yield()
  end
  return true
end

local sleepers = {}   -- coroutine -> when to wake it

function Peer.sleep(_, seconds)
  sleepers[coroutine.running()] = socket.gettime() + seconds
  coroutine.yield()
end

-- Sends `head`, then `piece` again and again up to `total` bytes or until the client goes:
-- how much went out.
function Peer:flood(head, piece, total, tail)
  local sent = 0
  if not self:send(head) then
    return sent
  end
  while sent < total do
    if not self:send(piece) then
      return sent
    end
    sent = sent + #piece
  end
  self:send(tail or "")
  return sent
end

-- Sends `piece` every `every` seconds, `count` times at most, until the client goes.
function Peer:drip(piece, every, count)
  for i = 1, count do
    if not self:send(piece) then
      return i - 1
    end
    self:sleep(every)
  end
  return count
end

local KB64 = string.rep("a", 65536)

local function ok_head(extra)
  return "HTTP/1.1 200 OK\r\n" .. (extra or "")
end

-- HTTP behaviours by path: function(peer, request) -> bytes sent (logged), or nil to keep the
-- connection for the next request.
local HTTP = {
  ["/drip-headers"] = function(p)
    return p:drip(ok_head(), 0, 1) + p:drip("X-Slow: 1\r\n", 0.3, 200)
  end,
  ["/drip-body"] = function(p)
    p:send(ok_head("Content-Length: 1000\r\n\r\n"))
    return p:drip("x", 0.2, 1000)
  end,
  ["/continue-forever"] = function(p)
    return p:drip("HTTP/1.1 100 Continue\r\n\r\n", 0.01, 100000)
  end,
  ["/trailers-forever"] = function(p)
    p:send(ok_head("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"))
    return p:drip("X-Trailer: 1\r\n", 0.005, 100000)
  end,
  ["/long-status"] = function(p)
    return p:flood("HTTP/1.1 200 ", KB64, 160 * MiB, "\r\n\r\n")
  end,
  ["/long-header"] = function(p)
    return p:flood(ok_head("X-Long: "), KB64, 160 * MiB, "\r\n\r\n")
  end,
  ["/long-chunk-ext"] = function(p)
    return p:flood(ok_head("Transfer-Encoding: chunked\r\n\r\n5;ext="), KB64, 160 * MiB, "\r\n")
  end,
  ["/long-trailer"] = function(p)
    return p:flood(ok_head("Transfer-Encoding: chunked\r\n\r\n0\r\nX-Long: "), KB64, 160 * MiB,
      "\r\n\r\n")
  end,
  ["/many-headers"] = function(p)
    return p:flood(ok_head(), "X-Many: 1\r\n", 20000 * 11, "\r\n")
  end,
  ["/status-2000"] = function(p)
    return p:flood("HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n", "", 0)
  end,
  ["/status-099"] = function(p)
    return p:flood("HTTP/1.1 099 Odd\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", 0)
  end,
  ["/te-notchunked"] = function(p)
    return p:flood(ok_head("Transfer-Encoding: notchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), "", 0)
  end,
  ["/te-and-length"] = function(p)
    return p:flood(ok_head("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
      .. "5\r\nhello\r\n0\r\n\r\n"), "", 0)
  end,
  ["/cr-in-header"] = function(p)
    return p:flood(ok_head("X-Odd: a\rb\r\nContent-Length: 0\r\n\r\n"), "", 0)
  end,
  ["/space-before-colon"] = function(p)
    return p:flood(ok_head("Content-Length : 0\r\n\r\n"), "", 0)
  end,
  ["/extra-bytes"] = function(p)
    return p:flood(ok_head("Content-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"), "", 0)
  end,
  -- Answers with the request's head as the server received it, escaped.
  ["/echo-raw"] = function(p, request)
    local body = string.format("%q", request.raw)
    p:send(ok_head("Content-Length: " .. #body .. "\r\n\r\n" .. body))
  end,
  -- Answers once and keeps the connection; the next request on it is read, then the connection
  -- is closed without an answer: to the client, a pooled connection that turned out stale.
  ["/then-close"] = function(p)
    if p.answered then
      return 0
    end
    p.answered = true
    p:send(ok_head("Content-Length: 2\r\n\r\nok"))
  end,
}

-- Reads one HTTP request (head and Content-Length body): { line, path, raw }, or nil.
local function read_http(p, first)
  local lines = { first }
  while true do
    local line = p:receive("*l")
    if not line then
      return nil
    end
    lines[#lines + 1] = line
    if line == "" or line == "\r" then
      break
    end
  end
  local raw = table.concat(lines, "\n")
  local length = tonumber(raw:lower():match("\ncontent%-length: *(%d+)") or "0")
  if length > 0 then
    raw = raw .. "\n" .. (p:receive(length) or "")
  end
  local path = first:match("^%u+ (/[^ ?]*)") or "/"
  return { line = first, path = path, raw = raw }
end

-- Redis behaviours by a command's first argument: the reply's bytes, or a function(peer).
local REDIS = {
  deep = function(p)
    return p:flood(string.rep("*1\r\n", 200000), "", 0, ":1\r\n")
  end,
  ["huge-bulk"] = "$9223372036854775807\r\n",
  ["fraction-bulk"] = "$1.5\r\nabc\r\n",
  ["hex-bulk"] = "$0x3\r\nabc\r\n",
  ["exponent-count"] = "*1e1\r\n",
  ["nan-bulk"] = "$nan\r\n",
  ["fraction-count"] = "*1.5\r\n:1\r\n:2\r\n",
  extra = "+OK\r\n+EXTRA\r\n",
  ["no-crlf"] = "$3\r\nabcXY",
  ["big-bulk"] = function(p)
    return p:flood("$700000000\r\n", KB64, 700 * MiB, "\r\n")
  end,
  ["big-array"] = function(p)
    return p:flood("*300000000\r\n", string.rep(":1\r\n", 16384), 300000000 * 4)
  end,
  ["long-line"] = function(p)
    return p:flood("+", KB64, 700 * MiB, "\r\n")
  end,
  ["bare-lf"] = "+OK\n",
  -- as a node of a Redis Cluster whose one node it is (CLUSTER SLOTS says so): redirects that
  -- never end
  ["moved-self"] = function(p)
    local reply = "-MOVED 3999 127.0.0.1:" .. own_port .. "\r\n"
    p:send(reply)
    return #reply
  end,
  ["ask-self"] = function(p)
    local reply = "-ASK 3999 :" .. own_port .. "\r\n"   -- an empty host: this one
    p:send(reply)
    return #reply
  end,
  ["try-again"] = "-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
  ASKING = "+OK\r\n",
  SLOTS = function(p)
    local reply = "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:" .. own_port .. "\r\n"
    p:send(reply)
    return #reply
  end,
}

-- SENTINEL get-master-addr-by-name NAME, by the name: replies no sentinel sends (or REDIS's
-- behaviour of that name); "addr:HOST:PORT" names that address, as a sentinel would.
local SENTINEL = {
  ["garbage-host"] = "*2\r\n$9\r\nno host!!\r\n$4\r\n6379\r\n",
  ["garbage-port"] = "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n99999\r\n",
  ["one-element"] = "*1\r\n$9\r\n127.0.0.1\r\n",
  ["integer"] = ":6379\r\n",
  ["unknown"] = "*-1\r\n",
}

local function sentinel_reply(name)
  local host, port = name:match("^addr:(.+):(%d+)$")
  if host then
    return "*2\r\n$" .. #host .. "\r\n" .. host .. "\r\n$" .. #port .. "\r\n" .. port .. "\r\n"
  end
  return SENTINEL[name] or REDIS[name]
end

-- Reads the rest of a RESP command whose first line was `first`: its arguments, or nil.
local function read_resp(p, first)
  local count = tonumber(first:match("^%*(%d+)"))
  if not count then
    return nil
  end
  local args = {}
  for i = 1, count do
    local size_line = p:receive("*l")
    local size = size_line and tonumber(size_line:match("^%$(%d+)"))
    if not size then
      return nil
    end
    local data = p:receive(size + 2)
    if not data then
      return nil
    end
    args[i] = data:sub(1, size)
  end
  return args
end

local connections = 0

local function serve(sock)
  connections = connections + 1
  note("connection", connections)
  local p = setmetatable({ sock = sock }, Peer)
  while true do
    local first = p:receive("*l")
    if not first then
      break
    end
    if first:sub(1, 1) == "*" then
      local args = read_resp(p, first)
      if not args then
        break
      end
      note("command", table.concat(args, " "))
      local behaviour = REDIS[args[2] or ""] or REDIS[args[1] or ""]
      if (args[1] or ""):upper() == "SENTINEL" then
        behaviour = sentinel_reply(args[3] or "")
      end
      if type(behaviour) == "function" then
        note("sent", args[2] or args[1], behaviour(p))
      elseif behaviour then
        p:send(behaviour)
      elseif (args[1] or ""):upper() == "PING" then
        p:send("+PONG\r\n")
      else
        p:send("$" .. #(args[2] or "") .. "\r\n" .. (args[2] or "") .. "\r\n")   -- echoes the key
      end
    else
      local request = read_http(p, first)
      if not request then
        break
      end
      note("request", request.line)
      local behaviour = HTTP[request.path]
      if behaviour then
        local sent = behaviour(p, request)
        if sent then   -- done with the connection
          note("sent", request.path, sent)
          break
        end
      else
        p:send(ok_head("Content-Length: 2\r\n\r\nok"))
      end
    end
  end
  sock:close()
end

local deadline = socket.gettime() + lifetime

while socket.gettime() < deadline do
  local reading, writing = { server }, {}
  for sock in pairs(waiting_read) do reading[#reading + 1] = sock end
  for sock in pairs(waiting_write) do writing[#writing + 1] = sock end
  local ready_read, ready_write = socket.select(reading, writing, 0.005)
  for _, sock in ipairs(ready_read) do
    if sock == server then
      local client = server:accept()
      if client then
        client:settimeout(0)
        local co = coroutine.create(serve)
        local ok, err = coroutine.resume(co, client)
        if not ok then note("error", tostring(err)) end
      end
    elseif waiting_read[sock] then
      local co = waiting_read[sock]
      waiting_read[sock] = nil
      local ok, err = coroutine.resume(co)
      if not ok then note("error", tostring(err)) end
    end
  end
  for _, sock in ipairs(ready_write) do
    local co = waiting_write[sock]
    if co then
      waiting_write[sock] = nil
      local ok, err = coroutine.resume(co)
      if not ok then note("error", tostring(err)) end
    end
  end
  -- Coroutines that slept (Peer.sleep yields without waiting on a socket).
  local now = socket.gettime()
  for co, wake in pairs(sleepers) do
    if wake <= now then
      sleepers[co] = nil
      local ok, err = coroutine.resume(co)
      if not ok then note("error", tostring(err)) end
    end
  end
end
server:close()
log:close()
