-- The Redis client (lua/jicoo/webhook/redis.lua) in plain Lua over LuaSocket, against real
-- redis-server processes on 127.0.0.1: every kind of RESP reply, error replies, pipelines,
-- scripts (a server that lost them included), AUTH with a password and with a user, SELECT, a
-- unix socket, a refused connection, a timeout and a connection killed under it.
local ok_socket, socket = pcall(require, "socket")
local ok_servers, servers = pcall(require, "servers")
if not (ok_socket and ok_servers and servers.redis_server and servers.redis_cli) then
  describe("redis client", function()
    pending("needs LuaSocket (lua-socket) and redis-server")
  end)
  return
end

local redis = require "jicoo.net.redis"

local BINARY = "a\r\nb\0c\r\n\255"

-- Commands run first, the command, and its reply.
local REPLIES = {
  { name = "a status", command = { "PING" }, reply = "PONG" },
  { name = "a status to a write", command = { "SET", "s", "v" }, reply = "OK" },
  { name = "an integer", command = { "INCRBY", "n", 5 }, reply = 5 },
  { name = "a negative integer", command = { "DECRBY", "n", 7 }, reply = -7 },
  { name = "a bulk string holding CR, LF, NUL and a byte over 127",
    before = { { "SET", "b", BINARY } }, command = { "GET", "b" }, reply = BINARY },
  { name = "an empty bulk string", before = { { "SET", "e", "" } }, command = { "GET", "e" },
    reply = "" },
  { name = "a nil bulk string", command = { "GET", "missing" }, reply = redis.null },
  { name = "an array", before = { { "RPUSH", "l", "a", "b", "c" } },
    command = { "LRANGE", "l", 0, -1 }, reply = { "a", "b", "c" } },
  { name = "an empty array", command = { "LRANGE", "missing", 0, -1 }, reply = {} },
  { name = "a nil array", command = { "BLPOP", "missing", "0.01" }, reply = redis.null },
  { name = "nested arrays holding a nil and an error",
    command = { "EVAL", "return { 1, { 'x', false }, redis.error_reply('OOPS no') }", 0 },
    reply = { 1, { "x", redis.null }, { err = "OOPS no" } } },
  { name = "a number argument with a fraction", before = { { "SET", "f", 1.5 } },
    command = { "GET", "f" }, reply = "1.5" },
  { name = "a number argument without one", before = { { "SET", "f", 2 ^ 40 } },
    command = { "GET", "f" }, reply = "1099511627776" },
  { name = "a number argument that is no short decimal", before = { { "SET", "f", 0.1 } },
    command = { "GET", "f" }, reply = "0.1" },
}

local function calls(server, command)
  return tonumber(server:cli("info commandstats"):match("cmdstat_" .. command .. ":calls=(%d+)")
    or 0)
end

describe("redis client", function()
  local dir, server, client

  setup(function()
    dir = servers.temp_dir()
    server = assert(servers.redis(dir))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    servers.remove_dir(dir)
  end)

  before_each(function()
    server:cli("flushall")
    client = redis.new({ port = server.port })
  end)

  after_each(function()
    client:close()
  end)

  for _, case in ipairs(REPLIES) do
    it("reads " .. case.name, function()
      for _, command in ipairs(case.before or {}) do
        assert.truthy(client:call((table.unpack or unpack)(command)))
      end
      assert.are.same(case.reply, client:call((table.unpack or unpack)(case.command)))
    end)
  end

  it("reads a large bulk string whole", function()
    local big = string.rep("0123456789abcdef", 65536)   -- 1 MiB
    assert.are.equal("OK", client:call("SET", "big", big))
    assert.are.equal(big, client:call("GET", "big"))
  end)

  it("answers an error reply with nil, the message and 'reply', and goes on", function()
    local reply, err, code = client:call("NOSUCHCOMMAND")
    assert.is_nil(reply)
    assert.truthy(err:find("^ERR unknown command"), err)
    assert.are.equal("reply", code)
    client:call("SET", "s", "v")
    reply, err, code = client:call("INCR", "s")
    assert.is_nil(reply)
    assert.truthy(err:find("^ERR value is not an integer"), err)
    assert.are.equal("reply", code)
    assert.are.equal("PONG", client:call("PING"))
  end)

  it("keeps one connection open across calls, and errors", function()
    local id = client:call("CLIENT", "ID")
    assert.is_number(id)
    client:call("NOSUCHCOMMAND")
    assert.are.equal(id, client:call("CLIENT", "ID"))
  end)

  it("raises on a missing command and on arguments that are neither strings nor numbers", function()
    assert.has_error(function() client:call() end, "redis:call: a command is required")
    assert.has_error(function() client:call("SET", "k", true) end,
      "redis:call: argument 3 must be a string or a number, got boolean")
    assert.has_error(function() client:pipeline({}) end)
    assert.has_error(function() client:pipeline({ { "GET", {} } }) end)
    assert.has_error(function() client:eval_script("return 1", { "k" }, { false }) end,
      "redis:eval_script: args[1] must be a string or a number, got boolean")
  end)

  it("pipelines commands in one request, an error reply in its place", function()
    local replies = client:pipeline({ { "SET", "p", "1" }, { "INCR", "p" }, { "HGET", "p", "f" },
      { "GET", "missing" } })
    assert.are.equal("OK", replies[1])
    assert.are.equal(2, replies[2])
    assert.truthy(replies[3].err:find("^WRONGTYPE"), replies[3].err)
    assert.are.equal(redis.null, replies[4])
  end)

  it("runs a script by its SHA1 once loaded, and loads it again when the server lost it", function()
    local script = "return { KEYS[1], ARGV[1], #ARGV }"
    local evalsha, eval, load = calls(server, "evalsha"), calls(server, "eval"),
      calls(server, "script|load")
    assert.are.same({ "k", "v", 2 }, client:eval_script(script, { "k" }, { "v", 3 }))
    assert.are.equal(load + 1, calls(server, "script|load"))
    assert.are.equal(eval + 1, calls(server, "eval"))
    assert.are.same({ "k2", "w", 1 }, client:eval_script(script, { "k2" }, { "w" }))
    assert.are.equal(evalsha + 1, calls(server, "evalsha"))
    assert.are.equal(eval + 1, calls(server, "eval"))

    assert.are.equal("OK", server:cli("script flush"))
    assert.are.same({ "k3", "x", 1 }, client:eval_script(script, { "k3" }, { "x" }))
    assert.are.equal(evalsha + 2, calls(server, "evalsha"))   -- the one answered NOSCRIPT
    assert.are.equal(eval + 2, calls(server, "eval"))
    assert.are.same({ "k4", "y", 1 }, client:eval_script(script, { "k4" }, { "y" }))
    assert.are.equal(evalsha + 3, calls(server, "evalsha"))
  end)

  it("gives a script's error reply as nil, err, 'reply'", function()
    assert.are.same({ nil, "MINE went wrong", "reply" },
      { client:eval_script("return redis.error_reply('MINE went wrong')") })
    local reply, err, code = client:eval_script("return redis.call('NOSUCH')")
    assert.is_nil(reply)
    assert.truthy(err:find("Unknown Redis command", 1, true), err)
    assert.are.equal("reply", code)
  end)

  it("fails, naming the address, when nothing listens there", function()
    local port = servers.free_port()
    local refused = redis.new({ port = port })
    local reply, err, code = refused:call("PING")
    assert.is_nil(reply)
    assert.are.equal("redis 127.0.0.1:" .. port .. ": cannot connect: connection refused", err)
    assert.are.equal("refused", code)
  end)

  it("times out, naming the address, when the server does not answer", function()
    local listener = assert(socket.bind("127.0.0.1", 0))
    local _, port = listener:getsockname()
    local slow = redis.new({ port = tonumber(port), read_timeout = 200 })
    local started = socket.gettime()
    local reply, err, code = slow:call("PING")
    local took = socket.gettime() - started
    listener:close()
    assert.is_nil(reply)
    assert.are.equal("redis 127.0.0.1:" .. port .. ": read: timeout", err)
    assert.are.equal("timeout", code)
    assert.truthy(took >= 0.15 and took < 2, tostring(took))
  end)

  it("sees that its connection was closed under it and connects again", function()
    local id = client:call("CLIENT", "ID")
    assert.are.equal("1", server:cli("client kill id " .. id))
    assert.are.equal("PONG", client:call("PING"))
    assert.are_not.equal(id, client:call("CLIENT", "ID"))
  end)

  it("raises on options it does not know or of the wrong type", function()
    local cases = {
      -- the core's message shapes (jicoo.webhook.options)
      { { hots = "x" }, "redis.new: unknown option 'hots' (it takes host, port, path, username,"
        .. " password, db, connect_timeout, send_timeout, read_timeout, pool_size,"
        .. " keepalive_timeout, max_reply, sentinels, master_name, sentinel_password, cluster)" },
      { { port = "6379" }, 'redis.new: option \'port\' must be a port number, got "6379"' },
      { { read_timeout = 0 }, "redis.new: option 'read_timeout' must be a positive number of"
        .. " milliseconds, got 0" },
      { { db = 1.5 }, "redis.new: option 'db' must be a database number (0, 1, ...), got 1.5" },
      { { username = "u" }, "redis.new: option 'username' needs option 'password'" },
    }
    for _, case in ipairs(cases) do
      assert.has_error(function() redis.new(case[1]) end, case[2])
    end
    assert.has_error(function() redis.new("localhost") end)
  end)
end)

describe("redis client with AUTH", function()
  local PASSWORD, USER, USER_PASSWORD = "s3cret pass", "alice", "wonder"
  local dir, server, unix_path

  setup(function()
    dir = servers.temp_dir()
    unix_path = dir .. "/redis.sock"
    server = assert(servers.redis(dir, { password = PASSWORD, args = {
      "--user", USER, "on", ">" .. USER_PASSWORD, "~*", "&*", "+@all",
      "--unixsocket", unix_path, "--unixsocketperm", "700",
    } }))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    servers.remove_dir(dir)
  end)

  it("authenticates with the password", function()
    local client = redis.new({ port = server.port, password = PASSWORD })
    assert.are.equal("PONG", client:call("PING"))
    assert.are.equal("default", client:call("ACL", "WHOAMI"))
    client:close()
  end)

  it("authenticates as a user", function()
    local client = redis.new({ port = server.port, username = USER, password = USER_PASSWORD })
    assert.are.equal(USER, client:call("ACL", "WHOAMI"))
    client:close()
  end)

  it("is refused without the password, and fails naming the address with a wrong one", function()
    local anonymous = redis.new({ port = server.port })
    local reply, err, code = anonymous:call("PING")
    assert.is_nil(reply)
    assert.truthy(err:find("^NOAUTH"), err)
    assert.are.equal("reply", code)
    anonymous:close()

    local wrong = redis.new({ port = server.port, password = "not it" })
    reply, err, code = wrong:call("PING")
    assert.is_nil(reply)
    assert.truthy(err:find("redis 127.0.0.1:" .. server.port .. ": AUTH failed: ", 1, true), err)
    assert.are.equal("refused", code)
  end)

  it("selects its database", function()
    local client = redis.new({ port = server.port, password = PASSWORD, db = 3 })
    assert.are.equal("OK", client:call("SET", "in-three", "yes"))
    client:close()
    assert.are.equal("yes", server:cli("-n 3 get in-three"))
    assert.are.equal("", server:cli("-n 0 get in-three"))
  end)

  it("talks over a unix socket", function()
    local client = redis.new({ path = unix_path, password = PASSWORD })
    assert.are.equal("unix:" .. unix_path, client.address)
    assert.are.equal("PONG", client:call("PING"))
    client:close()
    local missing = redis.new({ path = dir .. "/none.sock" })
    local reply, err = missing:call("PING")
    assert.is_nil(reply)
    assert.truthy(err:find("redis unix:" .. dir .. "/none.sock: cannot connect", 1, true), err)
  end)
end)

-- Replies a well-behaved server never sends (spec/hostile.lua answers `GET name` with them):
-- each fails with the code "limit" or "protocol", never raises, never lets the next call see
-- what was left over.
local HOSTILE = {
  { "deep", "a reply nested deeper than 16 arrays", "limit" },
  { "huge-bulk", "a reply over max_reply (67108864 bytes)", "limit" },
  { "big-bulk", "a reply over max_reply (67108864 bytes)", "limit" },
  { "big-array", "a reply over max_reply (67108864 bytes)", "limit" },
  { "long-line", "a reply line over 65536 bytes", "limit" },
  { "fraction-bulk", 'not a RESP reply: "$1.5"', "protocol" },
  { "hex-bulk", 'not a RESP reply: "$0x3"', "protocol" },
  { "nan-bulk", 'not a RESP reply: "$nan"', "protocol" },
  { "exponent-count", 'not a RESP reply: "*1e1"', "protocol" },
  { "fraction-count", 'not a RESP reply: "*1.5"', "protocol" },
  { "extra", "bytes more than the replies asked for", "protocol" },
  { "no-crlf", "a bulk string not followed by CR LF", "protocol" },
  { "bare-lf", 'a reply line not ended by CR LF: "+OK"', "protocol" },
}

describe("redis client against a hostile server", function()
  local dir, hostile, client

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
    client = redis.new({ port = hostile.port, read_timeout = 3000 })
  end)

  teardown(function()
    if hostile then
      hostile:stop()
    end
    servers.remove_dir(dir)
  end)

  for _, case in ipairs(HOSTILE) do
    it("fails on " .. case[1] .. ", and the next call gets its own reply", function()
      local before = servers.peak_memory()
      local ok, reply, err, code = pcall(client.call, client, "GET", case[1])
      assert.is_true(ok, tostring(reply))
      assert.is_nil(reply)
      assert.truthy(err:find(case[2], 1, true), err)
      assert.are.equal(case[3], code)
      assert.truthy(servers.peak_memory() - before < 32 * 1024, "peak memory grew")
      assert.are.equal("next", client:call("GET", "next"))   -- the server echoes the key
      assert.are.equal("PONG", client:call("PING"))
    end)
  end

  it("stops reading at max_reply", function()
    local small = redis.new({ port = hostile.port, max_reply = 100 })
    local reply, err = small:call("GET", string.rep("k", 200))
    assert.is_nil(reply)
    assert.truthy(err:find("a reply over max_reply (100 bytes)", 1, true), err)
  end)
end)

describe("redis client against a hostile server, in nginx (cosockets)", function()
  local runtime = os.getenv("JICOO_RUNTIME")
  if runtime and runtime ~= "luajit" then
    pending("runs once, in the luajit run: nginx's side does not depend on the runtime")
    return
  end
  if #servers.missing(false) > 0 then
    pending("needs " .. table.concat(servers.missing(false), ", "))
    return
  end
  local support = require "support"
  local q = support.quote
  local dir, hostile, server

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
    local _, log
    server, _, log = servers.tls_nginx(dir, "hostile", { plain = true,
      http = { "  lua_package_path " .. q(servers.root .. "/lua/?.lua;" .. servers.root
        .. "/lua/?/init.lua;;") .. ";", "  lua_package_cpath " .. q(servers.core_dir .. "/?.so;;")
        .. ";" },
      locations = { [[
    location = /try { content_by_lua_block {
      local redis = require "jicoo.net.redis"
      local client = redis.new({ port = ]] .. hostile.port .. [[, read_timeout = 3000 })
      local ok, reply, err, code = pcall(client.call, client, "GET", ngx.var.arg_key)
      local after = client:call("GET", "next")
      ngx.say(require("cjson").encode({ ok = ok, reply = reply, err = err, code = code,
        after = after }))
    } }]] },
    })
    assert(server, "nginx did not start:\n" .. tostring(log))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    if hostile then
      hostile:stop()
    end
    servers.remove_dir(dir)
  end)

  for _, case in ipairs(HOSTILE) do
    it("fails on " .. case[1] .. ", and the next call gets its own reply", function()
      local body_file = dir .. "/answer.json"
      support.run("curl -s --max-time 20 -o " .. q(body_file) .. " "
        .. q("http://127.0.0.1:" .. server.port .. "/try?key=" .. case[1]))
      local outcome = require("cjson").decode(support.read(body_file))
      assert.is_true(outcome.ok, tostring(outcome.reply))
      assert.truthy(outcome.err and outcome.err:find(case[2], 1, true), tostring(outcome.err))
      assert.are.equal(case[3], outcome.code)
      assert.are.equal("next", outcome.after)
    end)
  end
end)
