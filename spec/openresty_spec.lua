-- jicoo.webhook.openresty inside a real nginx (Debian's nginx with the Lua module), on
-- 127.0.0.1: every fixture and signature failure to its status, size limits, log entries of one
-- line whatever a delivery holds, the temp-file body, answer-first mode, no trace abort in the
-- adapter's request path, and a bounded wrk run. Deliveries are signed by the openssl command
-- line and sent by curl. The example nginx.conf, the automations that call out and the setup
-- `jicoo-webhook nginx` writes: openresty_setups_spec.lua. Runs as the ctest integration-openresty
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
local shared = require "openresty_shared"

local SECRET, fixture, key_of = shared.SECRET, shared.fixture, shared.key_of
local handled, wait_for, signed_post = shared.handled, shared.wait_for, shared.signed_post
local with_servers = shared.with_servers

local missing = servers.missing(false)
if #missing > 0 then
  describe("openresty integration", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
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

-- The adapter's request path stays compiled: NYI trace aborts inside nginx, in the adapter and
-- everything it calls, collected by spec/jit_trace.lua in the worker and read at /jit.
describe("openresty: LuaJIT traces", function()
  local state = with_servers()

  it("meet no NYI abort, no trace too long and no blacklisted code while serving signed deliveries", function()
    local sources = "{ 'nginx/adapter%.lua', 'router/init%.lua', 'router/answer%.lua',"
      .. " 'router/context%.lua', 'payload/init%.lua', 'payload/tape%.lua', 'journal/memory%.lua',"
      .. " 'journal/init%.lua', 'journal/claims/shdict%.lua', 'payload/json%.lua',"
      .. " 'payload/types%.lua', 'journal/token%.lua',"
      .. " '^jicoo%.webhook%.payload%.tape builders' }"
    local server = state.start("jit", {
      workers = 1,
      lua_path = servers.spec_dir .. "/?.lua;",
      init_worker = "require('jit_trace').collect(" .. sources .. ", true)",
      server = { "    location = /jit { content_by_lua_block {",
        "      local t = require('jit_trace') ngx.print(t.describe(t.aborts or {})) } }" },
    }, { JICOO_JOURNAL = "memory" })
    -- deliveries of several shapes (events, optional fields there or not, keys outside the
    -- schema), so that the parse's builders take side exits as they do in service
    local templates = {}
    for _, entry in ipairs({ { "valid", "guest_cancelled.json" }, { "valid", "host_cancelled.json" },
        { "valid", "strict_guest_booked_full.json" }, { "valid", "tokyo_no_utm_compact.json" },
        { "lenient", "drift.json" }, { "lenient", "portal_guest_rescheduled.json" } }) do
      templates[#templates + 1] = support.read(fixture(entry[1], entry[2]))
    end
    local t = os.time()
    local paths = {}
    for i = 1, 300 do
      paths[i] = state.dir .. "/jit-" .. i
      local template = templates[i % #templates + 1]
      support.write(paths[i], t .. "." .. (template:gsub('"uid":%s*"([^"]*)"', '"uid":"%1-' .. i .. '"', 1)))
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
