-- What a user runs inside a real nginx (Debian's nginx with the Lua module), on 127.0.0.1:
-- examples/openresty/nginx.conf as shipped, the example automations that call out over cosockets
-- (to the stand-ins of spec/standin.lua), and the setup `jicoo-webhook nginx` writes, used as the
-- docs say and against clients that hold connections. Deliveries are signed by the openssl
-- command line and sent by curl, or by `jicoo-webhook send`. Runs as the ctest
-- integration-openresty_setups (JICOO_INTEGRATION=1); the per-runtime Busted passes skip it.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("openresty integration", function()
    pending("runs as the ctest integration-openresty_setups (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"
local shared = require "openresty_shared"

local SECRET, fixture, wait_for = shared.SECRET, shared.fixture, shared.wait_for
local signed_post, with_servers = shared.signed_post, shared.with_servers

local missing = servers.missing(false)
if #missing > 0 then
  describe("openresty integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

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
    }, { JICOO_WEBHOOK_TOLERANCE = "600" })
    -- the tolerance the environment sets: 400 s old passes, 700 s old does not
    local old = fixture("valid", "tokyo_no_utm_compact.json")
    local status, body = signed_post(server, old, os.time() - 700)
    assert.are.equal("401", status, body)
    status, body = signed_post(server, old, os.time() - 400)
    assert.are.equal("200", status, body)
    local path = fixture("lenient", "portal_guest_booked.json")
    status, body = signed_post(server, path)
    assert.are.equal("200", status, body)
    local answer = cjson.decode(body)
    assert.are.equal("handled", answer.result)
    assert.is_true(answer.handlers >= 4)
    local ledger = support.read(server.output .. "/ledger.jsonl")
    assert.truthy(ledger:find('"uid":"ACDADADASS"', 1, true))
    local stats = support.run("curl -s --max-time 5 " .. support.quote(server:url("/jicoo/stats")))
    assert.are.same({ all = 2, guest_booked = 2 }, cjson.decode(stats))
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
