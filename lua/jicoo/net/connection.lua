-- What every connection of jicoo.net.socket shares, whatever carries it: a deadline and a
-- buffer the protocols read from. A kind of connection (nginx's cosocket, LuaSocket) gives two
-- methods, send_within(data, ms) and receive_some(max, ms); this module gives the rest.
--
--   local Kind = connection.kind()                   a kind's methods table, the shared ones below
--   local conn = connection.new(Kind, { sock =, deadline = })
--
-- Every wait is bounded by the connection's deadline (conn:set_deadline): each send and each
-- read gets the time that remains, so a peer that sends one byte at a time cannot stretch an
-- exchange past it. Lines are read from the buffer with a limit on their length, so a peer
-- that never ends a line costs at most that limit in memory.
local setmetatable = setmetatable
local string_find = string.find
local string_sub = string.sub
local table_concat = table.concat
local math_min = math.min

local runtime = require "jicoo.net.runtime"

local _M = {}

local CHUNK = 16384

local Connection = {}

-- The exchange ends at `deadline` (seconds, socket.now()'s clock), whatever happens.
function Connection:set_deadline(deadline)
  self.deadline = deadline
end

-- Milliseconds left before the deadline; nil once it has passed.
function Connection:remaining()
  local left = (self.deadline - runtime.now()) * 1000
  if left < 1 then
    return nil
  end
  return left
end

function Connection:send(data)
  local ms = self:remaining()
  if not ms then
    return nil, "timeout"
  end
  return self:send_within(data, ms)
end

-- Appends what the peer sends next (at most max bytes) to the buffer: true, or nil, err.
local function fill(self, max)
  local ms = self:remaining()
  if not ms then
    return nil, "timeout"
  end
  local data, err = self:receive_some(max, ms)
  if not data then
    return nil, err
  end
  local pos = self.pos
  if pos > #self.buffer then
    self.buffer = data
  else
    self.buffer = string_sub(self.buffer, pos) .. data
  end
  self.pos = 1
  return true
end

-- The next line, without its line end (LF, or CR LF: the second value says whether a CR came
-- before the LF); nil, err when the peer closes or stalls first, or when the line runs over
-- `max` bytes (err "line too long").
-- The next line in the buffer: line, crlf; nil, "line too long"; or false when the buffer
-- holds no whole line yet.
local function buffered_line(self, max)
  local pos = self.pos
  local lf = string_find(self.buffer, "\n", pos, true)
  if not lf then
    if #self.buffer - pos + 1 > max then
      return nil, "line too long"
    end
    return false
  elseif lf - pos > max then
    return nil, "line too long"
  end
  self.pos = lf + 1
  if lf > pos and string_sub(self.buffer, lf - 1, lf - 1) == "\r" then
    return string_sub(self.buffer, pos, lf - 2), true
  end
  return string_sub(self.buffer, pos, lf - 1), false
end

-- A line the buffer still lacks after a read: reads until it has one.
local function line_after_reads(self, max)
  while true do
    local ok, err = fill(self, CHUNK)
    if not ok then
      return nil, err
    end
    local line, crlf = buffered_line(self, max)
    if line ~= false then
      return line, crlf
    end
  end
end

-- (The usual line, in the buffer or after one read, takes no loop: a loop of a turn or two met
-- from a function's entry is a trace LuaJIT gives up on, spec/jit_trace.lua.)
function Connection:read_line(max)
  local line, crlf = buffered_line(self, max)
  if line == false then
    local ok, err = fill(self, CHUNK)
    if not ok then
      return nil, err
    end
    line, crlf = buffered_line(self, max)
    if line == false then
      line, crlf = line_after_reads(self, max)
    end
  end
  return line, crlf
end

-- Exactly n bytes; nil, err when the peer closes or stalls first.
function Connection:read(n)
  local buffer, pos = self.buffer, self.pos
  local have = #buffer - pos + 1
  if have >= n then
    self.pos = pos + n
    local bytes = string_sub(buffer, pos, pos + n - 1)
    return bytes
  end
  local parts, got = { string_sub(buffer, pos) }, have
  self.buffer, self.pos = "", 1
  while got < n do
    local ms = self:remaining()
    if not ms then
      return nil, "timeout"
    end
    local data, err = self:receive_some(math_min(n - got, CHUNK), ms)
    if not data then
      return nil, err
    end
    parts[#parts + 1] = data
    got = got + #data
  end
  return table_concat(parts)
end

-- Whatever the peer sends until it closes, at most max bytes: the bytes, or nil, err (err
-- "too long" past max).
function Connection:read_to_close(max)
  local parts = { string_sub(self.buffer, self.pos) }
  local got = #parts[1]
  self.buffer, self.pos = "", 1
  while true do
    if got > max then
      return nil, "too long"
    end
    local ms = self:remaining()
    if not ms then
      return nil, "timeout"
    end
    local data, err = self:receive_some(CHUNK, ms)
    if not data then
      if err == "closed" then
        return table_concat(parts)
      end
      return nil, err
    end
    parts[#parts + 1] = data
    got = got + #data
  end
end

-- Bytes received and not yet read: after a whole answer, a sign the peer said more than asked.
function Connection:unread()
  return #self.buffer - self.pos + 1
end

-- A kind of connection: its own methods go in the table returned, the shared ones come from
-- here.
function _M.kind()
  local kind = setmetatable({}, { __index = Connection })
  kind.__index = kind
  return kind
end

-- A connection of `kind` over fields (sock, deadline or timeout in ms, and the kind's own).
function _M.new(kind, fields)
  fields.buffer, fields.pos = "", 1
  fields.deadline = fields.deadline or runtime.now() + (fields.timeout or 60000) / 1000
  local conn = setmetatable(fields, kind)
  return conn   -- not a tail call of a built-in (spec/jit_trace.lua)
end

return _M
