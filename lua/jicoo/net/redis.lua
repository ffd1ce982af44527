-- A small Redis client speaking RESP2, for the Redis journal: the same code under nginx and in
-- plain Lua (the command line, the specs).
--
--   local redis = require "jicoo.net.redis"
--   local client = redis.new({ host = "127.0.0.1", port = 6379 })
--   client:call("HGETALL", key)                  -> reply | nil, err, code
--   client:pipeline({ { "GET", "a" }, ... })     -> { reply, ... } | nil, err, code
--   client:eval_script(script, keys, args)       -> reply | nil, err, code
--   client:close()
--   client.address           "host:port" or "unix:path", as its errors name the server
--   redis.null               a nil bulk string or array
--   redis.check_options(opts, who, level)   raises as new does on bad options
--
-- Options: host ("127.0.0.1"), port (6379), path (a unix socket, instead of host and port),
-- password, username (with password: AUTH username password), db (SELECT on a new connection),
-- connect_timeout, send_timeout, read_timeout (ms, 1000 each: the connect, the send of a
-- request and the reading of all its replies, each as a whole), max_reply (bytes one reply may
-- take, 64 MiB), pool_size (32) and keepalive_timeout (ms, 60000) for the nginx connection pool.
-- Or, instead of host, port and path: sentinels (a list of { host =, port = }), master_name and
-- sentinel_password: the client writes to the master the sentinels name and follows it through
-- a failover (redis_sentinel.lua says how); client.address is the master's once known.
-- Or cluster (a list of { host =, port = }, some of a Redis Cluster's nodes): the client sends
-- each command to the node serving its key's hash slot and follows MOVED and ASK
-- (redis_cluster.lua says how); a pipeline's keys must then share a slot (a hash tag).
--   redis.parse_url(s)       the options of "host:port", "sentinel://host:port,.../name" or
--                            "cluster://host:port,..." (redis_address.lua)
--   redis.slot(key)          a key's hash slot in a cluster
--
-- Replies: a status or a bulk string is a Lua string, an integer a number, an array a list. A nil
-- bulk string or array is redis.null (core.null, the light userdata NULL that ngx.null and
-- cjson.null equal): a nil would leave holes in lists and read as a failure. An error reply is
-- nil, "ERR ...", "reply" from call and eval_script, and { err = "ERR ..." } inside an array or a
-- pipeline's list; the connection stays open, its replies still in step. Any other failure
-- (refused, timed out, closed, bytes that are not RESP, a reply over max_reply or nested more
-- than 16 arrays deep, more replies than asked for) is nil, "redis ADDRESS: ...", code (timeout,
-- closed, refused, limit or protocol),
-- and the connection is closed, never reused: a timed-out one may still carry a late reply.
-- A reply never raises: sizes and counts are strict decimals, every bulk string's CR LF is
-- checked, every line bounded (64 KiB).
--
-- Under nginx, in a phase with cosockets, every call takes a connection from the pool (one per
-- address, db and user, since AUTH and SELECT stay on it) and puts it back after a whole reply.
-- Elsewhere LuaSocket does the I/O: in plain Lua each client keeps one connection open (made
-- again after a failure); in an nginx phase without cosockets (init, for one) the call blocks
-- and its connection is closed after it, so that no socket outlives the phase or is shared by
-- forked workers.
local setmetatable = setmetatable
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local select = select
local tostring = tostring
local rawget = rawget
local require = require
local string_format = string.format
local string_sub = string.sub
local table_concat = table.concat

local core = require "jicoo.webhook.core"
local options = require "jicoo.webhook.options"
local socket = require "jicoo.net.socket"
local resp = require "jicoo.net.resp"
local sentinel = require "jicoo.net.redis_sentinel"
local cluster = require "jicoo.net.redis_cluster"
local redis_address = require "jicoo.net.redis_address"
local new_table = require("jicoo.net.runtime").new_table

local _M = {}

_M.null = core.null

-- The options new takes (connect, send and read timeouts in ms).
local timeout = { check = options.positive, what = "a positive number of milliseconds" }
local OPTIONS = options.schema("redis.new", {
  { "host", "string", default = "127.0.0.1" },
  { "port", "number", default = 6379, check = options.positive, what = "a port number" },
  { "path", "string" },
  { "username", "string" },
  { "password", "string" },
  { "db", "number", default = 0, check = options.whole, what = "a database number (0, 1, ...)" },
  { "connect_timeout", "number", default = 1000, check = timeout.check, what = timeout.what },
  { "send_timeout", "number", default = 1000, check = timeout.check, what = timeout.what },
  { "read_timeout", "number", default = 1000, check = timeout.check, what = timeout.what },
  { "pool_size", "number", default = 32, check = options.positive, what = "a positive number" },
  { "keepalive_timeout", "number", default = 60000, check = timeout.check, what = timeout.what },
  { "max_reply", "number", default = 64 * 1024 * 1024, check = options.positive,
    what = "a positive number of bytes" },
  { "sentinels", "table" },
  { "master_name", "string" },
  { "sentinel_password", "string" },
  { "cluster", "table" },
})

local Client = {}
Client.__index = Client

local function in_nginx()
  local ngx = rawget(_G, "ngx")
  return ngx ~= nil and type(ngx.socket) == "table" and ngx.socket.tcp ~= nil
end

-- The options checked and completed (raises on an unknown one or a bad value, and outside
-- nginx when LuaSocket is missing), at the level error() would take in the caller; `who` names
-- the caller in the messages (the Redis journal and claim store take these options too).
function _M.check_options(opts, who, level, allow)
  local o = OPTIONS:check(opts, level + 1, allow, who)
  if o.username ~= nil and o.password == nil then
    error(who .. ": option 'username' needs option 'password'", level + 1)
  end
  sentinel.check(o, who, level + 1)
  cluster.check(o, who, level + 1)
  if not in_nginx() then
    local ok, why = socket.luasocket()
    if not ok then
      error(who .. ": " .. why, level + 1)
    end
  end
  return o
end

-- The names of the client's options (a set), for a module that takes them beside its own.
function _M.option_names()
  return OPTIONS:name_set()
end

-- For a module that takes the client's options beside its own (the Redis journal and claim
-- store): the client's, checked as new checks them, the names in `own` (a set) left out.
function _M.client_options(opts, own, who, level)
  local o = _M.check_options(opts, who, level + 1, own)
  local client_opts = {}
  for name in pairs(OPTIONS:name_set()) do
    client_opts[name] = o[name]
  end
  return client_opts
end

-- Points the client at a server: its address and the connection options (the nginx pool is
-- named by the address, so that a pooled connection never serves another server).
local function aim(self, host, port, path)
  local address = path and ("unix:" .. path) or (host .. ":" .. port)
  self.host, self.port, self.path, self.address = host, port, path, address
  self.connect_opts = {
    host = host, port = port, path = path,
    timeout = self.connect_timeout,
    -- AUTH and SELECT stay on a pooled connection: one pool per address, db and user.
    -- A sentinel's client checks ROLE on a new connection: it never takes one another made.
    pool = string_format("jicoo-webhook:redis:%s:%d:%s%s", address, self.db, self.username or "",
      self.sentinel and ":master" or ""),
    pool_size = self.pool_size,
  }
end

-- Parses the address forms the receiver and the command line take.
_M.parse_url = redis_address.parse_url
_M.slot = cluster.slot

function _M.new(opts)
  local o = _M.check_options(opts, "redis.new", 2)
  local self = setmetatable({
    username = o.username,
    password = o.password,
    db = o.db,
    connect_timeout = o.connect_timeout,
    send_timeout = o.send_timeout,
    read_timeout = o.read_timeout,
    keepalive_timeout = o.keepalive_timeout,
    max_reply = o.max_reply,
    pool_size = o.pool_size,
    conn = nil,      -- plain Lua: the open connection
    scripts = {},    -- script text -> its SHA1, as SCRIPT LOAD gave it
  }, Client)
  if o.sentinels then
    -- The master is asked for on the first call, and again once it is forgotten.
    self.sentinel = sentinel.new(o, _M.new)
    self.address = "master '" .. o.master_name .. "'"
    self.master_known = false
  elseif o.cluster then
    self.cluster = cluster.new(o, _M.new)
    self.address = "cluster " .. table_concat(self.cluster.seeds, ",")
  else
    aim(self, o.host, o.port, o.path)
  end
  return self
end

---------------------------------------------------------------------------------------------
-- Connections (socket.lua: a cosocket under nginx, LuaSocket elsewhere)

-- One reply from conn (an error reply as { err = message }), or nil, err.
local function read_one(self, conn)
  local value, msg = resp.read_reply(conn, { left = self.max_reply, max = self.max_reply }, 0)
  if value == nil then
    return nil, "redis " .. self.address .. ": read: " .. tostring(msg)
  elseif value == resp.ERROR_REPLY then
    value = { err = msg }
  end
  return value
end

-- Sends a request of `count` commands on conn and reads their replies: the list, or nil, err.
-- The send has send_timeout, the replies read_timeout, each as a whole; a server that says more
-- than it was asked is out of step, and the exchange fails.
local function round_trip(self, conn, request, count)
  conn:set_deadline(socket.now() + self.send_timeout / 1000)
  local ok, err = conn:send(request)
  if not ok then
    return nil, "redis " .. self.address .. ": send: " .. tostring(err)
  end
  conn:set_deadline(socket.now() + self.read_timeout / 1000)
  local value, msg = read_one(self, conn)   -- the first apart: most requests are one command
  if value == nil then
    return nil, msg
  end
  local replies = { value }
  for i = 2, count do
    value, msg = read_one(self, conn)
    if value == nil then
      return nil, msg
    end
    replies[i] = value
  end
  if conn:unread() > 0 then
    return nil, "redis " .. self.address .. ": read: " .. conn:unread()
      .. " bytes more than the replies asked for"
  end
  return replies
end

-- AUTH and SELECT on a new connection, in one round trip; true or nil, err.
local function handshake(self, conn)
  local commands, names = {}, {}
  if self.password then
    commands[1] = self.username and resp.encode({ "AUTH", self.username, self.password }, 3)
      or resp.encode({ "AUTH", self.password }, 2)
    names[1] = "AUTH"
  end
  if self.db ~= 0 then
    commands[#commands + 1] = resp.encode({ "SELECT", self.db }, 2)
    names[#names + 1] = "SELECT " .. self.db
  end
  if self.sentinel then
    commands[#commands + 1] = resp.encode({ "ROLE" }, 1)
    names[#names + 1] = "ROLE"
  end
  if #commands == 0 then
    return true
  end
  local replies, err = round_trip(self, conn, table_concat(commands), #commands)
  if not replies then
    return nil, err
  end
  for i, reply in ipairs(replies) do
    if type(reply) == "table" and reply.err then
      return nil, "redis " .. self.address .. ": " .. names[i] .. " failed: " .. reply.err
    elseif names[i] == "ROLE" and (type(reply) ~= "table" or reply[1] ~= "master") then
      return nil, "redis " .. self.address .. ": not the master (ROLE says "
        .. (type(reply) == "table" and type(reply[1]) == "string" and reply[1]
          or "something else") .. ")"
    end
  end
  return true
end

-- A connection ready for commands: plain Lua's open one, or a new (or pooled) one.
local function connection(self)
  local conn = self.conn
  if conn then
    if not conn:stale() then
      return conn
    end
    conn:close()   -- closed by the server, or it spoke unasked: out of step
    self.conn = nil
  end
  local err
  conn, err = socket.connect(self.connect_opts)
  if not conn then
    if rawget(_G, "ngx") and not socket.has_cosockets() then
      local ok, why = socket.luasocket()
      if not ok then
        err = err .. " (no cosockets in this nginx phase, and LuaSocket " .. why .. ")"
      end
    end
    return nil, "redis " .. err
  end
  if conn:reused() == 0 then
    local ok
    ok, err = handshake(self, conn)
    if not ok then
      conn:close()
      return nil, err
    end
  end
  return conn
end

-- Sends request (count commands) and returns the replies, or nil, err, code (socket.code_of:
-- timeout, closed, refused, limit, protocol; the connection is closed), and `true` when nothing
-- was sent (no connection could be made).
local function exchange_with(self, request, count)
  local conn, err = connection(self)
  if not conn then
    return nil, err, socket.code_of(err), true
  end
  local replies
  replies, err = round_trip(self, conn, request, count)
  if not replies then
    conn:close()
    self.conn = nil
    return nil, err, socket.code_of(err)
  end
  if conn.cosocket then
    conn:keepalive(self.keepalive_timeout, self.pool_size)
  elseif rawget(_G, "ngx") then
    conn:close()   -- no socket outlives a phase without cosockets, or is shared by forks
  else
    self.conn = conn
  end
  return replies
end

-- Forgets the master: the next call asks the sentinels again.
local function forget(self)
  self.master_known = false
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
end

-- exchange_with, to the master the sentinels name. A failure of the connection, or a
-- -READONLY (the server is a replica now), forgets the master; the request goes once more, to
-- the master the sentinels name then, when it certainly changed nothing: no connection was
-- made, or the server refused every write as a replica.
local function master_exchange(self, request, count)
  local state = self.sentinel
  local replies, err, code, unsent
  for attempt = 1, 2 do
    if not self.master_known then
      local host, port
      host, port, code = sentinel.master(state, _M.null)
      if not host then
        return nil, port, code
      end
      aim(self, host, port)
      self.master_known = true
    end
    replies, err, code, unsent = exchange_with(self, request, count)
    local readonly = replies and sentinel.is_readonly(replies)
    if replies and not readonly then
      return replies
    end
    if readonly or code == "closed" or code == "refused" or code == "timeout" then
      forget(self)
    end
    if attempt == 2 or not (readonly or unsent) then
      break
    end
  end
  return replies, err, code
end

-- Sends parts (a list of encoded commands, whose keys are in `slot` in a cluster) to the server
-- the client talks to: the list of replies, or nil, err, code.
local function exchange(self, parts, slot)
  if self.cluster then
    return cluster.exchange(self.cluster, parts, slot, exchange_with)
  elseif self.sentinel then
    return master_exchange(self, table_concat(parts), #parts)
  end
  return exchange_with(self, table_concat(parts), #parts)
end

local function single(replies)
  local reply = replies[1]
  if type(reply) == "table" and reply.err then
    return nil, reply.err, "reply"
  end
  return reply
end

---------------------------------------------------------------------------------------------
-- Commands

-- One command: its reply.
function Client:call(...)
  local n = select("#", ...)
  if n == 0 then
    error("redis:call: a command is required", 2)
  end
  local command = { ... }
  local request, why = resp.encode(command, n)
  if not request then
    error("redis:call: " .. why, 2)
  end
  local replies, err, code = exchange(self, { request }, self.cluster and cluster.slot_of(command, n))
  if not replies then
    return nil, err, code
  end
  return single(replies)
end

-- Several commands in one round trip: the list of their replies (an error reply is
-- { err = message } in its place).
function Client:pipeline(commands)
  if type(commands) ~= "table" or #commands == 0 then
    error("redis:pipeline: commands must be a non-empty list of commands", 2)
  end
  local requests, slot = {}, nil
  for i, command in ipairs(commands) do
    if type(command) ~= "table" or #command == 0 then
      error("redis:pipeline: command " .. i .. " must be a non-empty list", 2)
    end
    local request, why = resp.encode(command, #command)
    if not request then
      error("redis:pipeline: command " .. i .. ": " .. why, 2)
    end
    requests[i] = request
    local its = self.cluster and cluster.slot_of(command, #command)
    if its and slot and its ~= slot then
      error("redis:pipeline: in a cluster, a pipeline's keys must share a hash slot (command "
        .. i .. " is in slot " .. its .. ", an earlier one in " .. slot .. ")", 2)
    end
    slot = slot or its
  end
  return exchange(self, requests, slot)
end

-- Runs a Lua script on the server: EVALSHA once its SHA1 is known, else (the first time, and
-- after a NOSCRIPT when the server lost it: a restart, SCRIPT FLUSH, a failover) SCRIPT LOAD
-- and EVAL pipelined, so that every run is one round trip but the one that meets a NOSCRIPT.
function Client:eval_script(script, keys, args)
  if type(script) ~= "string" then
    error("redis:eval_script: script must be a string, got " .. type(script), 2)
  end
  keys, args = keys or {}, args or {}
  local key_count, arg_count = #keys, #args
  local n = 3 + key_count + arg_count
  local command = new_table(n, 0)   -- at its size at once: a table that grows is rehashed
  command[1], command[2], command[3] = "EVALSHA", "", key_count
  for i = 1, key_count + arg_count do
    local list, j = keys, i
    if i > key_count then
      list, j = args, i - key_count
    end
    local kind = type(list[j])
    if kind ~= "string" and kind ~= "number" then
      error("redis:eval_script: " .. (list == keys and "keys" or "args") .. "[" .. j
        .. "] must be a string or a number, got " .. kind, 2)
    end
    command[3 + i] = list[j]
  end
  local slot = self.cluster and #keys > 0 and cluster.slot(tostring(keys[1])) or nil

  local sha = self.scripts[script]
  if sha then
    command[2] = sha
    local replies, err, code = exchange(self, { resp.encode(command, n) }, slot)
    if not replies then
      return nil, err, code
    end
    local reply
    reply, err, code = single(replies)
    if reply ~= nil or string_sub(err, 1, 8) ~= "NOSCRIPT" then
      return reply, err, code
    end
    self.scripts[script] = nil
  end
  command[1], command[2] = "EVAL", script
  local replies, err, code = exchange(self, { resp.encode({ "SCRIPT", "LOAD", script }, 3),
    resp.encode(command, n) }, slot)
  if not replies then
    return nil, err, code
  end
  if type(replies[1]) == "string" then
    self.scripts[script] = replies[1]
  end
  return single({ replies[2] })
end

-- Closes the connection plain Lua keeps open (the next call opens another).
function Client:close()
  if self.conn then
    self.conn:close()
    self.conn = nil
  end
  if self.sentinel then
    for _, client in ipairs(self.sentinel.clients) do
      client:close()
    end
  end
  if self.cluster then
    for _, client in pairs(self.cluster.nodes) do
      client:close()
    end
  end
  return true
end

return _M
