-- What an operator sees of the setup `jicoo-webhook nginx` writes, in a real nginx with two
-- workers on 127.0.0.1: /jicoo/metrics counting every worker's deliveries in one place (and
-- accepted by promtool), the dead-letter alarm posted once to a Slack stand-in, and
-- /jicoo/health turning 503 while the journal's folder cannot take files. Deliveries are signed
-- by the openssl command line and sent by curl. Runs as the ctest integration-operations
-- (JICOO_INTEGRATION=1); the per-runtime Busted passes skip it.
if os.getenv("JICOO_INTEGRATION") ~= "1" then
  describe("operations integration", function()
    pending("runs as the ctest integration-operations (JICOO_INTEGRATION=1)")
  end)
  return
end

local cjson = require "cjson"
local support = require "support"
local servers = require "servers"
local shared = require "openresty_shared"

local wait_for, with_servers = shared.wait_for, shared.with_servers

local missing = servers.missing(false)
if #missing > 0 then
  describe("operations integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

-- An exposition's samples by series (name and labels as written).
local function samples(text)
  local values = {}
  for line in text:gmatch("[^\n]+") do
    if not line:match("^#") then
      local series, value = line:match("^(.-) (%S+)$")
      values[series] = tonumber(value)
    end
  end
  return values
end

-- GET path: the status (a string) and the body.
local function fetch(server, path)
  local out = support.run("curl -s -w '\\n%{http_code}' --max-time 5 " .. support.quote(server:url(path)))
  local body, status = out:match("^(.*)\n(%d+)%s*$")
  return status, body
end

describe("operations: the setup `jicoo-webhook nginx` writes, with two workers", function()
  local state = with_servers()
  local runner = require "cli_runner"
  local standin, server, handlers

  setup(function()
    standin = servers.standin(servers.temp_dir())
    assert(support.run("chmod 755 " .. support.quote(state.dir)))   -- as a PREFIX's parent is
    handlers = state.dir .. "/handlers"
    assert(support.run("mkdir -p -m 755 " .. support.quote(handlers)))
    -- which worker ran each booking, so that the spec knows both took deliveries
    support.write(handlers .. "/guest_booked.lua", "return function(ev, ctx)\n"
      .. "  local f = assert(io.open(ctx.config.output_dir .. '/pids', 'a'))\n"
      .. "  f:write(ngx.worker.pid(), '\\n'); f:close()\nend\n")
    support.write(handlers .. "/guest_cancelled.lua",
      "return function() error('the CRM is down', 0) end\n")
    support.write(handlers .. "/dead_letter.lua", "return function(dead, ctx)\n"
      .. "  local res, err = ctx.http({ method = 'POST', url = os.getenv('JICOO_SLACK_WEBHOOK_URL'),\n"
      .. "    body = '{\"text\":\"dead ' .. dead.key .. ' after ' .. dead.attempts .. '\"}',\n"
      .. "    headers = { ['Content-Type'] = 'application/json' }, timeout = 3000 })\n"
      .. "  if not res then return nil, err end\nend\n")
    assert(support.run("chmod 644 " .. support.quote(handlers) .. "/*.lua"))
    server = state.start("ops", {
      render = function(port, prefix)
        local code, out, err = runner.run("nginx " .. support.quote(prefix) .. " --listen 127.0.0.1:"
          .. port .. " --workers 2")
        assert(code == 0, "jicoo-webhook nginx: " .. out .. err)
        -- every connection to a worker the kernel picks, so that both take deliveries
        local conf, n = support.read(prefix .. "/conf/nginx.conf"):gsub("listen 127%.0%.0%.1:"
          .. port .. ";", "listen 127.0.0.1:" .. port .. " reuseport;")
        assert(n == 1, "the written setup no longer listens as it did")
        return conf
      end,
    }, { JICOO_HANDLERS = handlers, JICOO_OUTPUT_DIR = "", JICOO_RETRY_DELAYS = "0",
      JICOO_SLACK_WEBHOOK_URL = standin.slack_url })
  end)

  teardown(function()
    if standin then
      standin:stop()
      servers.remove_dir(standin.dir)
    end
  end)

  local function booking(uid, event)
    local body = support.read(shared.fixture("lenient", "portal_guest_booked.json"))
    body = body:gsub('"uid"%s*:%s*"ACDADADASS"', '"uid":"' .. uid .. '"', 1)
    if event then
      body = body:gsub('"event"%s*:%s*"guest_booked"', '"event":"' .. event .. '"', 1)
    end
    local path = state.dir .. "/" .. uid .. ".json"
    support.write(path, body)
    return path
  end

  it("counts every worker's deliveries in one place, in text promtool accepts", function()
    for i = 1, 40 do
      local status, body = shared.signed_post(server, booking("ops" .. i))
      assert.are.equal("200", status, body)
    end
    assert.are.equal("401", (servers.post(server:url(), booking("forged"),
      { ["Jicoo-Webhook-Signature"] = servers.sign("whsec_other", os.time(), booking("forged")) })))
    local broken = state.dir .. "/broken.json"
    support.write(broken, "{")
    assert.are.equal("400", (shared.signed_post(server, broken)))
    local pids, workers = {}, 0
    for pid in support.read(server.prefix .. "/out/pids"):gmatch("%d+") do
      workers = workers + (pids[pid] and 0 or 1)
      pids[pid] = true
    end
    assert.are.equal(2, workers, "one worker took every delivery")
    for _ = 1, 4 do   -- each scrape answered by whichever worker takes it
      local status, text = fetch(server, "/jicoo/metrics")
      assert.are.equal("200", status)
      local values = samples(text)
      assert.are.equal(40, values['jicoo_webhook_deliveries_total{event="guest_booked",result="handled"}'], text)
      assert.are.equal(1, values['jicoo_webhook_rejected_total{reason="bad_signature"}'], text)
      assert.are.equal(1, values['jicoo_webhook_rejected_total{reason="invalid_payload"}'], text)
      assert.are.equal(1, values.jicoo_webhook_journal_up)
      assert.truthy(values.jicoo_webhook_scheduler_passes_total >= 2)
      local file = state.dir .. "/scrape.txt"
      support.write(file, text)
      local out, ok = support.run("promtool check metrics < " .. support.quote(file) .. " 2>&1")
      assert(ok, out)
    end
  end)

  it("posts the dead-letter alarm once, when the last attempt fails", function()
    local status = shared.signed_post(server, booking("ops_dead", "guest_cancelled"))
    assert.are.equal("500", status)
    -- the scheduler's retry, due at once (JICOO_RETRY_DELAYS=0), is the last attempt
    assert.is_true(wait_for(function() return #standin:recorded("slack") >= 1 end, 10),
      "no alarm posted")
    support.run("sleep 2")   -- passes after it raise no second alarm
    local posted = standin:recorded("slack")
    assert.are.equal(1, #posted)
    local text = cjson.decode(posted[1]).text
    assert.truthy(text:find("^dead guest_cancelled/ops_dead/[^ ]+ after 2$"), text)
    local _, exposition = fetch(server, "/jicoo/metrics")
    local values = samples(exposition)
    assert.are.equal(1, values['jicoo_webhook_dead_letters_total{event="guest_cancelled"}'], exposition)
    assert.are.equal(1, values['jicoo_webhook_journal_deliveries{state="dead"}'], exposition)
    assert.are.equal(1, values['jicoo_webhook_retries_total{event="guest_cancelled",result="handler_failed"}'],
      exposition)
  end)

  it("answers health 200, and 503 naming the journal while its folder cannot take files", function()
    local status, body = fetch(server, "/jicoo/health")
    assert.are.equal("200", status, body)
    assert.are.equal("ok", cjson.decode(body).journal)
    local journal_dir = support.quote(server.prefix .. "/journal")
    assert(support.run("chmod 500 " .. journal_dir))
    status, body = fetch(server, "/jicoo/health")
    assert(support.run("chmod 700 " .. journal_dir))
    assert.are.equal("503", status, body)
    local answer = cjson.decode(body)
    assert.is_false(answer.ok)
    assert.truthy(answer.journal:find("the folder does not let this process", 1, true), body)
    assert.are.equal("ok", answer.scheduler)
    status, body = fetch(server, "/jicoo/health")
    assert.are.equal("200", status, body)
    -- the 503 is a warning, not an error: error.log's errors are the dead letter's alone
    for _, line in ipairs(server:error_lines()) do
      assert.truthy(line:find("dead letter guest_cancelled/ops_dead/", 1, true)
        or line:find("guest_cancelled", 1, true), line)
    end
  end)

  it("loads an edited script within seconds, no reload, and names a broken edit once", function()
    local function edit(source)
      support.write(handlers .. "/guest_booked.lua", source)
      assert(support.run("chmod 644 " .. support.quote(handlers .. "/guest_booked.lua")))
    end
    edit("return function(ev, ctx)\n"
      .. "  local f = assert(io.open(ctx.config.output_dir .. '/versions', 'a'))\n"
      .. "  f:write('v2 ', ngx.worker.pid(), '\\n'); f:close()\nend\n")
    -- JICOO_HANDLERS_CHECK is 2 s: both workers take the edit within a few
    local n = 0
    assert.is_true(wait_for(function()
      n = n + 1
      shared.signed_post(server, booking("reload" .. n))
      local file = io.open(server.prefix .. "/out/versions")
      local versions = file and file:read("*a") or ""
      if file then
        file:close()
      end
      local workers = {}
      for pid in versions:gmatch("v2 (%d+)") do
        workers[pid] = true
      end
      return next(workers) ~= nil and next(workers, next(workers)) ~= nil
    end, 15), "the edit was not taken by both workers")
    edit("return function( end\n")
    assert.is_true(wait_for(function()
      local _, body = fetch(server, "/jicoo/health")
      return body and body:find("guest_booked.lua: ", 1, true) ~= nil
    end, 10), "health does not name the broken script")
    local status, body = fetch(server, "/jicoo/health")
    assert.are.equal("200", status, body)
    assert.are.equal("500", (shared.signed_post(server, booking("broken_edit"))))
    support.run("sleep 3")   -- more checks, no new edit: no new log line
    local named = 0
    for _, line in ipairs(server:error_lines()) do
      if line:find("broken script " .. handlers .. "/guest_booked.lua", 1, true) then
        named = named + 1
      end
    end
    assert.are.equal(2, named)   -- once in each worker
    edit("return function() end\n")
    assert.is_true(wait_for(function()
      local _, health = fetch(server, "/jicoo/health")
      return health and health:find('"scripts":"ok"', 1, true) ~= nil
    end, 10))
  end)
end)
