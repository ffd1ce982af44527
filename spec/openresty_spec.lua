-- jicoo.webhook.openresty inside a real nginx (Debian's nginx with the Lua module), on
-- 127.0.0.1: every fixture and signature failure to its status, size limits, the temp-file
-- body, answer-first mode, the example nginx.conf, and a bounded wrk run. Deliveries are signed
-- by the openssl command line and sent by curl. Runs as the ctest integration-openresty
-- (JICOO_INTEGRATION=1); the per-runtime Busted passes skip it.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("openresty integration", function()
    pending("runs as the ctest integration-openresty (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"

local SECRET = "whsec_openresty_spec"
local HANDLERS = servers.spec_dir .. "/nginx_handlers"

local missing = servers.missing(false)
if #missing > 0 then
  describe("openresty integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local function fixture(folder, name)
  return support.fixtures .. "/" .. folder .. "/" .. name
end

-- The idempotency key as the README defines it, computed here from an independent decoder.
local function key_of(path)
  local doc = cjson.decode(support.read(path))
  local function escape(s)
    return (s:gsub("%%", "%%25"):gsub("/", "%%2F"))
  end
  return escape(doc.event) .. "/" .. escape(doc.object.uid) .. "/" .. doc.createdAt
end

-- handled.log as { [key] = runs }, and the runs in all.
local function handled(dir)
  return servers.counts(dir .. "/handled.log")
end

local wait_for = servers.wait_for

local function signed_post(server, path, t)
  t = t or os.time()
  return servers.post(server:url(), path,
    { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, t, path) })
end

-- The nginx servers of one describe block: started in setup, stopped by pid in teardown.
local function with_servers()
  local state = { servers = {} }
  function state.start(name, opts, env)
    opts = opts or {}
    local output = state.dir .. "/" .. name .. "-out"
    assert(support.run("mkdir -p " .. support.quote(output)))
    local full_env = {
      JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = opts.handlers or HANDLERS,
      JICOO_OUTPUT_DIR = output,
    }
    for k, v in pairs(env or {}) do
      full_env[k] = v
    end
    local render = opts.render or function(port)
      return servers.config(port, opts)
    end
    local server, log = servers.nginx_server(state.dir, name, render, full_env)
    assert(server, "nginx did not start:\n" .. tostring(log))
    server.output = output
    state.servers[#state.servers + 1] = server
    return server
  end
  setup(function()
    state.dir = servers.temp_dir()
  end)
  teardown(function()
    for _, server in ipairs(state.servers) do
      server:stop()
    end
    servers.remove_dir(state.dir)
  end)
  return state
end

describe("openresty: one nginx, shared-dict store", function()
  local state = with_servers()
  local server

  setup(function()
    server = state.start("main")
  end)

  it("answers 200 to every valid and lenient fixture, and runs each delivery once", function()
    local paths = {}
    for _, folder in ipairs({ "valid", "lenient" }) do
      for _, name in ipairs(support.list(support.fixtures .. "/" .. folder, "%.json$")) do
        paths[#paths + 1] = fixture(folder, name)
      end
    end
    assert.is_true(#paths >= 8)
    local seen, expected = {}, {}
    for _, path in ipairs(paths) do
      local key = key_of(path)
      local status, body = signed_post(server, path)
      assert.are.equal("200", status, path .. ": " .. body)
      local answer = cjson.decode(body)
      assert.are.equal(seen[key] and "duplicate" or "handled", answer.result, path)
      seen[key] = true
      expected[key] = 1
    end
    assert.are.same(expected, (handled(server.output)))
  end)

  local invalid = support.expectations("invalid")
  for _, case in ipairs(invalid) do
    it("answers 400 " .. case.code .. " " .. tostring(case.path) .. " to invalid/" .. case.file, function()
      local status, body = signed_post(server, fixture("invalid", case.file))
      assert.are.equal("400", status, body)
      local answer = cjson.decode(body)
      assert.are.equal("invalid_payload", answer.error)
      assert.are.equal(case.code, answer.code)
      assert.are.equal(case.path, answer.path)
      -- The rejection is in the error log with its code and path.
      local logged = "answered 400: stage=parse code=" .. case.code
        .. (case.path and (" path=" .. (case.path == "" and '""' or case.path)) or "")
      assert.truthy(server:log():find(logged, 1, true), logged)
    end)
  end

  local booked = fixture("valid", "host_cancelled.json")
  local signature_cases = {
    { "missing", nil, "missing_header" },
    { "malformed", function() return "not a signature" end, "malformed_header" },
    { "without v1", function(t) return "t=" .. t .. ",v0=" .. string.rep("ab", 32) end, "no_signature" },
    { "expired", function(t) return servers.sign(SECRET, t - 3600, booked) end, "expired" },
    { "from another secret", function(t) return servers.sign("whsec_other", t, booked) end, "mismatch" },
  }
  for _, case in ipairs(signature_cases) do
    it("answers 401 " .. case[3] .. " to a signature " .. case[1], function()
      local headers = {}
      if case[2] then
        headers["Jicoo-Webhook-Signature"] = case[2](os.time())
      end
      local status, body = servers.post(server:url(), booked, headers)
      assert.are.equal("401", status, body)
      assert.are.same({ ok = false, error = "bad_signature", code = case[3] }, cjson.decode(body))
      assert.truthy(server:log():find("answered 401: stage=signature code=" .. case[3], 1, true))
    end)
  end

  it("answers 413 to a body over max_size, from Content-Length, before reading it", function()
    local path = state.dir .. "/big.json"
    support.write(path, string.rep(" ", 1024 * 1024 + 1))
    local status, body = signed_post(server, path)
    assert.are.equal("413", status, body)
    assert.are.same({ ok = false, error = "too_large", max_size = 1048576 }, cjson.decode(body))
    assert.truthy(server:log():find("answered 413: stage=size code=limit", 1, true))
  end)

  it("answers 413 to a chunked body over max_size (no Content-Length), after reading it", function()
    local path = state.dir .. "/big-chunked.json"
    support.write(path, string.rep(" ", 1536 * 1024))
    local status, body = servers.post(server:url(), path, { ["Transfer-Encoding"] = "chunked" })
    assert.are.equal("413", status, body)
    assert.are.equal("too_large", cjson.decode(body).error)
  end)

  it("answers nginx's own 413 (as JSON) to a body over client_max_body_size", function()
    local path = state.dir .. "/huge.json"
    support.write(path, string.rep(" ", 3 * 1024 * 1024))
    local status, body = signed_post(server, path)
    assert.are.equal("413", status, body)
    assert.are.same({ ok = false, error = "too_large" }, cjson.decode(body))
  end)

  -- A key's bytes reach the log in an error's path, a uid's in a delivery's key: JSON escapes
  -- decode to control bytes, which must not end the entry or start a forged one.
  it("writes every entry as one line, whatever control bytes a delivery's keys and uid hold", function()
    local template = support.read(fixture("valid", "host_cancelled.json"))
    local hostile_key = state.dir .. "/hostile-key.json"
    support.write(hostile_key, (template:gsub('"tracking": {',
      '"tracking": {"x\\u0000\\n\\r[error] forged":{"a":1,"a":2},', 1)))
    local hostile_uid = state.dir .. "/hostile-uid.json"
    support.write(hostile_uid, (template:gsub('"uid": "ACDADADASS"',
      '"uid": "uid\\n2024/01/01 00:00:00 [error] 1#1: forged\\r\\t\\u0001"', 1)))

    local status, body = signed_post(server, hostile_key)
    assert.are.equal("400", status, body)
    assert.are.equal("/object/tracking/x\0\n\r[error] forged/a", cjson.decode(body).path)
    for _ = 1, 2 do   -- handled, then a duplicate: both logged with the key
      status, body = signed_post(server, hostile_uid)
      assert.are.equal("200", status, body)
    end

    local log = server:log()
    local rejection = {}
    for line in log:gmatch("[^\n]*\n") do
      -- Every entry starts with nginx's date and level on a line of its own, and holds no
      -- control byte but its line end.
      assert.truthy(line:match("^%d%d%d%d/%d%d/%d%d %d%d:%d%d:%d%d %[%a+%] "), line)
      assert.is_nil(line:sub(1, -2):find("%c"), line)
      if line:find("code=duplicate path=/object/tracking/x", 1, true) then
        rejection[#rejection + 1] = line
      end
    end
    assert.are.equal(1, #rejection, table.concat(rejection))
    assert.truthy(rejection[1]:find("path=/object/tracking/x\\u0000\\n\\r[error] forged/a", 1, true),
      rejection[1])
    assert.truthy(log:find("duplicate delivery host_cancelled/uid\\n2024%2F01%2F01 00:00:00 [error]"
      .. " 1#1: forged\\r\\t\\u0001/", 1, true), log)
  end)

  it("answers 405 to a GET", function()
    assert.are.equal("405", servers.get(server:url()))
  end)
end)

describe("openresty: a body nginx buffered to a temp file", function()
  local state = with_servers()

  it("is read from the file and handled", function()
    local server = state.start("spool", { client_body_buffer_size = "1k" })
    -- Past what nginx reads with the headers, so the body goes through the temp file; the
    -- trailing whitespace keeps it one valid JSON document.
    local path = state.dir .. "/padded.json"
    support.write(path, support.read(fixture("valid", "guest_cancelled.json")) .. string.rep(" ", 64 * 1024))
    local status, body = signed_post(server, path)
    assert.are.equal("200", status, body)
    assert.are.equal("handled", cjson.decode(body).result)
    assert.are.same({ [key_of(path)] = 1 }, (handled(server.output)))
    assert.truthy(server:log():find("a client request body is buffered to a temporary file", 1, true))
  end)
end)

describe("openresty: answer-first mode", function()
  local state = with_servers()

  it("answers 200 before the handler ran, then runs it once, in a timer", function()
    local server = state.start("first", nil, { JICOO_ANSWER_FIRST = "1", JICOO_TEST_SLEEP = "1" })
    local path = fixture("valid", "host_cancelled.json")
    local key = key_of(path)
    local status, body = signed_post(server, path)
    assert.are.equal("200", status, body)
    assert.are.equal("accepted", cjson.decode(body).result)
    assert.is_nil(handled(server.output)[key])   -- the handler is still asleep
    status, body = signed_post(server, path)
    assert.are.equal("200", status)
    assert.are.equal("duplicate", cjson.decode(body).result)
    assert.is_true(wait_for(function()
      return handled(server.output)[key] == 1
    end, 5))
    -- Rejections are still answered synchronously.
    status = servers.post(server:url(), path, {})
    assert.are.equal("401", status)
    status = signed_post(server, fixture("invalid", "missing_object_uid.json"))
    assert.are.equal("400", status)
    assert.are.same({}, server:error_lines())
  end)
end)

describe("openresty: examples/openresty/nginx.conf as shipped", function()
  local state = with_servers()

  it("boots, runs the example automations and counts in /jicoo/stats", function()
    local example = support.read(servers.root .. "/examples/openresty/nginx.conf")
    local server = state.start("example", {
      handlers = "",   -- the receiver's default: the example handler folders
      render = function(port)
        local conf, n = example:gsub("/srv/jicoo%-webhook", servers.root)
        assert(n >= 3, "the example no longer names /srv/jicoo-webhook")
        conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
        assert(n == 1, "the example no longer listens on 127.0.0.1:8080")
        if support.run("id -u"):match("^0") then
          conf = conf:gsub("# user www%-data;", "user root;")
        end
        return conf
      end,
    })
    local path = fixture("lenient", "portal_guest_booked.json")
    local status, body = signed_post(server, path)
    assert.are.equal("200", status, body)
    local answer = cjson.decode(body)
    assert.are.equal("handled", answer.result)
    assert.is_true(answer.handlers >= 4)
    local ledger = support.read(server.output .. "/ledger.jsonl")
    assert.truthy(ledger:find('"uid":"ACDADADASS"', 1, true))
    local stats = support.run("curl -s --max-time 5 " .. support.quote(server:url("/jicoo/stats")))
    assert.are.same({ all = 1, guest_booked = 1 }, cjson.decode(stats))
    assert.truthy(server:log():find("would post to #bookings: New booking: John Doe", 1, true))
    assert.are.same({}, server:error_lines())
  end)
end)

-- The automations that act (examples/notify, enrich, rules) inside nginx: ctx.http and jicoo.api
-- over cosockets, to the stand-ins of spec/standin.lua (Jicoo's API over TLS, verified against
-- lua_ssl_trusted_certificate; a Slack webhook), in the request, in answer-first's timer and in
-- the scheduler's retry; and a slow call does not hold the worker.
describe("openresty: automations that call out, over cosockets", function()
  local state = with_servers()
  local standin
  local ACTING = servers.root .. "/examples/notify:" .. servers.root .. "/examples/enrich:"
    .. servers.root .. "/examples/rules"

  setup(function()
    standin = servers.standin(servers.temp_dir())
  end)
  teardown(function()
    standin:stop()
    servers.remove_dir(standin.dir)
  end)
  before_each(function()
    standin:reset()
  end)

  local function start(name, env, opts)
    local full = { JICOO_SLACK_WEBHOOK_URL = standin.slack_url, JICOO_API_URL = standin.api_url,
      JICOO_API_KEY = standin.key, JICOO_BLOCKED_DOMAINS = "example.com", JICOO_RULES_DRY_RUN = "0" }
    for k, v in pairs(env or {}) do
      full[k] = v
    end
    opts = opts or {}
    opts.handlers = ACTING
    opts.http = { "  lua_ssl_trusted_certificate " .. standin.ca_file .. "; lua_ssl_verify_depth 3;" }
    return state.start(name, opts, full)
  end

  local function booking_file(uid)
    local path = state.dir .. "/" .. uid .. ".json"
    support.write(path, (support.read(fixture("lenient", "portal_guest_booked.json"))
      :gsub('"uid": "ACDADADASS"', '"uid": "' .. uid .. '"')))
    return path
  end

  it("in the request: posts to Slack, enriches from the API, cancels by the rule", function()
    local server = start("acting")
    local status, body = signed_post(server, fixture("lenient", "portal_guest_booked.json"))
    assert.are.equal("200", status, body)
    assert.are.same({ event = "guest_booked", handlers = 3, ok = true, result = "handled" },
      cjson.decode(body))
    local posted = standin:recorded("slack")
    assert.are.equal(1, #posted)
    assert.truthy(cjson.decode(posted[1]).text:find("^New booking: John Doe"))
    local crm = cjson.decode(support.read(server.output .. "/crm.json"))
    assert.are.equal("Example K.K.", crm.ACDADADASS.company)
    assert.are.equal(1, #standin:recorded("cancelled"))
    assert.are.same({}, server:error_lines())
  end)

  it("in answer-first's timer, and again from the scheduler after Slack failed once", function()
    local server = start("acting-first", { JICOO_ANSWER_FIRST = "1", JICOO_RETRY_DELAYS = "1" })
    standin:slack_fail(1)
    local status, body = signed_post(server, fixture("lenient", "portal_guest_booked.json"))
    assert.are.equal("200", status, body)
    assert.are.equal("accepted", cjson.decode(body).result)
    assert.is_true(wait_for(function() return #standin:recorded("slack") == 1 end, 10),
      "the retry never posted")
    assert.is_true(wait_for(function()
      return io.open(server.output .. "/crm.json") ~= nil
    end, 5))
    -- enrich and rules ran once (booking, contacts; booking, cancel), notify twice
    local requests = standin:recorded("requests")
    assert.are.equal(4, #requests, table.concat(requests, "\n"))
    assert.are.equal(1, #standin:recorded("cancelled"))
    assert.truthy(server:log():find("posting to Slack: answered 500", 1, true))
  end)

  it("a slow API call yields: the worker answers other requests meanwhile", function()
    local server = start("acting-slow", { JICOO_BLOCKED_DOMAINS = "" }, { workers = 1 })
    local path = booking_file("bk_slow")   -- the stand-in takes 2 s to answer
    local header = servers.sign(SECRET, os.time(), path)
    local out_file = state.dir .. "/slow.out"
    support.run("(curl -s -o " .. support.quote(out_file) .. " --max-time 20 -H 'Content-Type:"
      .. " application/json' -H " .. support.quote("Jicoo-Webhook-Signature: " .. header)
      .. " --data-binary @" .. support.quote(path) .. " " .. support.quote(server:url())
      .. " >/dev/null 2>&1 &)")
    assert.is_true(wait_for(function()
      for _, line in ipairs(standin:recorded("requests")) do
        if line == "GET /v1/bookings/bk_slow" then
          return true
        end
      end
      return false
    end, 5), "the handler never called the API")
    local took = tonumber((support.run("curl -s -o /dev/null -w '%{time_total}' --max-time 5 "
      .. support.quote(server:url("/jicoo/stats")))))
    assert.truthy(took < 1, "the worker was held for " .. tostring(took) .. " s")
    assert.is_true(wait_for(function()
      local text = io.open(out_file) and support.read(out_file) or ""
      return text:find('"result":"handled"', 1, true) ~= nil
    end, 10))
    assert.are.same({}, server:error_lines())
  end)
end)

-- What the docs tell a new user to do: `jicoo-webhook nginx PREFIX`, nginx started as it
-- prints, `jicoo-webhook example` and `jicoo-webhook send`. Started by root (as here in CI), the
-- workers run as nobody, so this also checks that they can read the checkout and write the
-- journal and the automations' output.
describe("openresty: the setup `jicoo-webhook nginx` writes, used as the docs say", function()
  local state = with_servers()
  local runner = require "cli_runner"

  it("serves the example automations, as the user starting nginx or as nobody under root", function()
    local written
    assert(support.run("chmod 755 " .. support.quote(state.dir)))   -- as a PREFIX's parent is
    local server = state.start("site", {
      render = function(port, prefix)
        local code, out, err = runner.run("nginx " .. support.quote(prefix) .. " --listen 127.0.0.1:" .. port)
        written = { code = code, out = out, err = err }
        assert(code == 0, "jicoo-webhook nginx: " .. out .. err)
        return support.read(prefix .. "/conf/nginx.conf")
      end,
    }, { JICOO_HANDLERS = "", JICOO_OUTPUT_DIR = "" })
    assert.truthy(written.out:find("send:   jicoo-webhook send " .. server:url() .. " FILE...", 1, true),
      written.out)
    local delivery = state.dir .. "/booked.json"
    local code, body = runner.run("example --now guest_booked")
    assert.are.equal(0, code)
    support.write(delivery, body)
    local env = "JICOO_WEBHOOK_SECRET=" .. SECRET
    local out
    -- An operator's commands before the delivery comes (as root in CI, on the journal the
    -- workers own), for its own key among others: they must leave nothing the workers cannot use.
    local key = assert(require("jicoo.webhook").parse(body, { level = "lenient" })):key()
    for _, args in ipairs({ "list", "retry " .. support.quote(key), "drop " .. support.quote(key),
        "retry nosuch/key/t", "show " .. support.quote(key) }) do
      runner.run("deliveries " .. args .. " --journal " .. support.quote(server.prefix .. "/journal"))
    end
    code, out = runner.run("send " .. server:url() .. " " .. support.quote(delivery)
      .. " " .. support.quote(delivery), env)
    assert.are.equal(0, code, out)
    assert.truthy(out:find(delivery .. ' -> 200 {"event":"guest_booked","handlers":5,"ok":true,'
      .. '"result":"handled"}\n', 1, true), out)
    assert.truthy(out:find('"result":"duplicate"', 1, true), out)
    code, out = runner.run("send " .. server:url() .. " " .. support.quote(delivery),
      "JICOO_WEBHOOK_SECRET=whsec_wrong")
    assert.are.equal(1, code)
    assert.truthy(out:find("-> 401 ", 1, true), out)
    local uid = assert(cjson.decode(body).object.uid)
    assert.truthy(support.read(server.prefix .. "/out/ledger.jsonl"):find(uid, 1, true))
    local journaled = require("jicoo.webhook.core").file_list(server.prefix .. "/journal")
    assert.truthy(journaled and next(journaled), "nothing journaled")
    if support.run("id -u"):match("^0") then
      assert.truthy(support.run("ps -o user= --ppid " .. server.pid):match("nobody"),
        "the workers do not run as nobody")
      assert.are.equal("", support.run("find " .. support.quote(server.prefix .. "/journal")
        .. " ! -user nobody"))
    end
    assert.are.same({}, server:error_lines())
  end)
end)

-- What the written setup does against clients that hold connections: nginx's timeouts of
-- seconds (its defaults are a minute) and 16 requests in progress from one address.
describe("openresty: the setup `jicoo-webhook nginx` writes, against clients that hold on", function()
  local state = with_servers()
  local runner = require "cli_runner"

  it("cuts off a stalled head or body in seconds, and refuses a 17th request from one address", function()
    assert(support.run("chmod 755 " .. support.quote(state.dir)))   -- as a PREFIX's parent is
    local server = state.start("guard", {
      render = function(port, prefix)
        local code, out, err = runner.run("nginx " .. support.quote(prefix) .. " --listen 127.0.0.1:" .. port)
        assert(code == 0, "jicoo-webhook nginx: " .. out .. err)
        return support.read(prefix .. "/conf/nginx.conf")
      end,
    }, { JICOO_HANDLERS = "", JICOO_OUTPUT_DIR = "" })
    local socket = require "socket"
    local function open(text)
      local conn = socket.tcp()
      conn:settimeout(10)
      assert(conn:connect("127.0.0.1", server.port))
      assert(conn:send(text))
      return conn
    end
    local started = socket.gettime()
    -- 16 deliveries whose bodies stop after one byte, and a head that never ends
    local held = {}
    for i = 1, 16 do
      held[i] = open("POST /jicoo/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
        .. "\r\nContent-Length: 1000\r\n\r\n{")
    end
    local stalled_head = open("POST /jicoo/webhook HTTP/1.1\r\nHost: x\r\n")
    servers.sleep(0.5)
    local path = fixture("lenient", "portal_guest_booked.json")
    local status = signed_post(server, path)
    assert.are.equal("503", status)   -- the 17th from 127.0.0.1
    -- nginx ends each within its 5 s timeouts (its default is 60 s): the read sees the close
    for _, conn in ipairs(held) do
      conn:receive("*a")
      conn:close()
    end
    stalled_head:receive("*a")
    stalled_head:close()
    local took = socket.gettime() - started
    assert.truthy(took >= 4.5 and took < 8, "the stalled requests ended after " .. took .. " s")
    status = signed_post(server, path)
    assert.are.equal("200", status)
  end)
end)

-- The adapter's request path stays compiled: NYI trace aborts inside nginx, in the adapter and
-- everything it calls, collected by spec/jit_trace.lua in the worker and read at /jit.
describe("openresty: LuaJIT traces", function()
  local state = with_servers()

  it("meet no NYI abort and run into no blacklisted code while serving signed deliveries", function()
    local sources = "{ 'nginx/adapter%.lua', 'router/init%.lua', 'router/answer%.lua',"
      .. " 'router/context%.lua', 'payload/init%.lua', 'payload/tape%.lua', 'journal/memory%.lua',"
      .. " 'journal/init%.lua', 'journal/claims/shdict%.lua', 'payload/json%.lua',"
      .. " 'payload/types%.lua', 'journal/token%.lua',"
      .. " '^jicoo%.webhook%.payload%.tape builders' }"
    local server = state.start("jit", {
      workers = 1,
      lua_path = servers.spec_dir .. "/?.lua;",
      init_worker = "require('jit_trace').collect(" .. sources .. ")",
      server = { "    location = /jit { content_by_lua_block {",
        "      local t = require('jit_trace') ngx.print(t.describe(t.aborts or {})) } }" },
    }, { JICOO_JOURNAL = "memory" })
    local template = support.read(fixture("valid", "guest_cancelled.json"))
    local t = os.time()
    local paths = {}
    for i = 1, 300 do
      paths[i] = state.dir .. "/jit-" .. i
      support.write(paths[i], t .. "." .. (template:gsub('"uid": "([^"]*)"', '"uid": "%1-' .. i .. '"', 1)))
    end
    local hexes = servers.sign_prefixed(SECRET, paths)
    for i = 1, #paths do
      local body = support.read(paths[i]):sub(#tostring(t) + 2)
      support.write(paths[i], body)
      local status = servers.post(server:url(), paths[i],
        { ["Jicoo-Webhook-Signature"] = "t=" .. t .. ",v1=" .. hexes[i] })
      assert.are.equal("200", status)
    end
    local aborts = support.run("curl -s --max-time 5 " .. support.quote(server:url("/jit")))
    assert.are.equal("", aborts)
  end)
end)

describe("openresty: load", function()
  local state = with_servers()
  local have_wrk = servers.wrk ~= nil

  it("serves a 10 s wrk run of signed deliveries with no non-2xx answer and no error", function()
    if not have_wrk then
      pending("wrk is not installed")
      return
    end
    local server = state.start("load")
    -- 500 distinct deliveries, signed by one openssl run over "t." .. body files.
    local t = os.time()
    local template = support.read(fixture("valid", "tokyo_no_utm_compact.json")):gsub("%s+$", "")
    local bodies, signed_files = {}, {}
    for i = 1, 500 do
      bodies[i] = template:gsub('"uid":"bk_7Hq2"', '"uid":"load' .. i .. '"')
      signed_files[i] = state.dir .. "/load-" .. i
      support.write(signed_files[i], t .. "." .. bodies[i])
    end
    local hexes = servers.sign_prefixed(SECRET, signed_files)
    local records = {}
    for i = 1, #bodies do
      records[i] = "t=" .. t .. ",v1=" .. hexes[i] .. "\n" .. #bodies[i] .. "\n" .. bodies[i]
    end
    local data = state.dir .. "/wrk.data"
    support.write(data, table.concat(records))

    local out = support.run("wrk -t2 -c16 -d10s --timeout 5s -s "
      .. support.quote(servers.spec_dir .. "/bench/nginx_wrk.lua") .. " "
      .. support.quote(server:url()) .. " -- " .. support.quote(data) .. " 2 2>&1")
    print("\n" .. out)
    local total = tonumber(out:match("(%d+) requests in"))
    local rate = tonumber(out:match("Requests/sec:%s+([%d%.]+)"))
    local non2xx = tonumber(out:match("Non%-2xx or 3xx responses:%s+(%d+)") or "0")
    local socket_errors = out:match("Socket errors:[^\n]*")
    assert.truthy(total and total > 500, out)
    assert.truthy(rate, out)
    assert.are.equal(0, non2xx)
    assert.is_nil(socket_errors)
    assert.are.same({}, server:error_lines())
    -- Every distinct delivery ran exactly once; the rest were duplicates.
    local counts, runs = handled(server.output)
    assert.are.equal(#bodies, runs)
    for i = 1, #bodies do
      assert.are.equal(1, counts["guest_booked/load" .. i .. "/2024-03-01T10:00:05+09:00"])
    end
  end)
end)
