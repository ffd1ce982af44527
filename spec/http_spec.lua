-- jicoo.net.http outside nginx (LuaSocket, LuaSec), against a real nginx on 127.0.0.1 that
-- answers with every kind of body and serves TLS with a certificate of a CA made here by the
-- openssl command line; and `jicoo-webhook send` against the same nginx.
local support = require "support"
local missing = support.missing_http_client()
if #missing > 0 then
  describe("http", function()
    pending("needs " .. table.concat(missing, ", "))
  end)
  return
end

local http = require "jicoo.net.http"
local runner = require "cli_runner"
local servers = require "servers"
local q = support.quote

describe("http.request outside nginx", function()
  local dir, server, tls_port

  setup(function()
    dir = servers.temp_dir()
    local log
    server, tls_port, log = servers.tls_nginx(dir, "http", { locations = {
      "    location = /length { return 200 'hello'; }",
      "    location = /chunked { content_by_lua_block {",
      "      ngx.print('one,') ngx.flush(true) ngx.print('two,') ngx.flush(true) ngx.print('three') } }",
      "    location = /close { chunked_transfer_encoding off; content_by_lua_block {",
      "      ngx.print(string.rep('x', 40000)) ngx.flush(true) ngx.print('end') } }",
      "    location = /echo { content_by_lua_block {",
      "      ngx.req.read_body()",
      "      local h = ngx.req.get_headers()",
      "      ngx.header['X-Repeated'] = { 'a', 'b' }",
      "      ngx.say(ngx.req.get_method(), ' ', ngx.var.request_uri, ' host=', h.host,",
      "        ' len=', tostring(h['content-length']), ' x=', tostring(h['x-test']),",
      "        ' body=', tostring(ngx.req.get_body_data())) } }",
      "    location = /big { content_by_lua_block { ngx.print(string.rep('b', 2 * 1024 * 1024)) } }",
      "    location = /slow { content_by_lua_block { ngx.sleep(2) ngx.say('late') } }",
      "    location = /nothing { return 204; }",
      "    location = /moved { return 302 /length; }",
    } })
    assert(server, "nginx did not start:\n" .. tostring(log))
  end)

  teardown(function()
    if server then
      server:stop()
    end
    servers.remove_dir(dir)
  end)

  local function url(path, tls)
    return (tls and "https://localhost:" .. tls_port or "http://127.0.0.1:" .. server.port) .. path
  end

  it("reads a body by its Content-Length", function()
    local res = assert(http.request({ url = url("/length") }))
    assert.are.equal(200, res.status)
    assert.are.equal("hello", res.body)
    assert.are.equal("5", res.headers["content-length"])
  end)

  it("reads a chunked body", function()
    local res = assert(http.request({ url = url("/chunked") }))
    assert.are.equal("chunked", res.headers["transfer-encoding"])
    assert.are.equal("one,two,three", res.body)
  end)

  it("reads a body that ends when the peer closes", function()
    local res = assert(http.request({ url = url("/close") }))
    assert.is_nil(res.headers["content-length"])
    assert.are.equal(40003, #res.body)
  end)

  it("sends the method, the path, Host, Content-Length, the headers and the body as given", function()
    local res = assert(http.request({ method = "post", url = url("/echo?a=1"), body = "payload",
      headers = { ["X-Test"] = "yes" } }))
    assert.are.equal("POST /echo?a=1 host=127.0.0.1:" .. server.port .. " len=7 x=yes body=payload\n",
      res.body)
    assert.are.equal("a, b", res.headers["x-repeated"])
  end)

  it("answers 204 and 3xx as they are, without following", function()
    assert.are.equal(204, assert(http.request({ url = url("/nothing") })).status)
    local moved = assert(http.request({ url = url("/moved") }))
    assert.are.equal(302, moved.status)
    assert.truthy(moved.headers.location:find("/length$"))
  end)

  it("refuses an answer over max_body, and gives up on a peer slower than the timeout", function()
    local res, err = http.request({ url = url("/big"), max_body = 1024 * 1024 })
    assert.is_nil(res)
    assert.truthy(err:find("over max_body", 1, true), err)
    res, err = http.request({ url = url("/slow"), timeout = 300 })
    assert.is_nil(res)
    assert.truthy(err:find("timeout", 1, true), err)
  end)

  it("fails naming the address when nothing listens", function()
    local res, err = http.request({ url = "http://127.0.0.1:" .. servers.free_port() .. "/" })
    assert.is_nil(res)
    assert.truthy(err:find("cannot connect", 1, true), err)
  end)

  it("speaks TLS to a certificate of a trusted CA for the host name", function()
    local res = assert(http.request({ url = url("/length", true), ca_file = dir .. "/ca.crt" }))
    assert.are.equal("hello", res.body)
  end)

  it("refuses a certificate of a CA it does not trust, and one for another name", function()
    local res, err = http.request({ url = url("/length", true), ca_file = dir .. "/other.crt" })
    assert.is_nil(res)
    assert.truthy(err:find("TLS", 1, true) and err:find("verify", 1, true), err)
    res, err = http.request({ url = "https://127.0.0.1:" .. tls_port .. "/length",
      ca_file = dir .. "/ca.crt" })
    assert.is_nil(res)
    assert.truthy(err:find("the certificate is not for this IP address", 1, true), err)
    -- verify = false is the caller's explicit choice
    assert.are.equal("hello", assert(http.request({ url = url("/length", true), verify = false })).body)
  end)

  it("raises on a request the caller got wrong", function()
    for _, req in ipairs({ { url = "ftp://x/" }, { url = "no url" }, {},
        { url = url("/"), headers = { ["X-Bad"] = "a\r\nInjected: yes" } },
        { url = url("/"), headers = { ["Bad Name"] = "x" } },
        { url = url("/"), method = "GET\r\n" }, { url = "http://u:p@host/" } }) do
      assert.has_error(function() http.request(req) end)
    end
  end)

  it("jicoo-webhook send signs each file now and POSTs it, exit 1 on a non-2xx", function()
    local body_file = dir .. "/delivery.json"
    support.write(body_file, '{"a":1}')
    local code, out = runner.run("send --secret s " .. q(url("/echo")) .. " " .. q(body_file))
    assert.are.equal(0, code, out)
    assert.truthy(out:find(body_file .. " -> 200 POST /echo host=", 1, true), out)
    assert.truthy(out:find("len=7", 1, true) and out:find('body={"a":1}', 1, true), out)
    code, out = runner.run("send --secret s " .. q(url("/moved")) .. " " .. q(body_file))
    assert.are.equal(1, code)
    -- nginx's HTML page is named, not printed: its type, size and title, and what to check
    assert.truthy(out:find("%-> 302 %(text/html, %d+ bytes: \"302 Found\": not the receiver's"
      .. " answer; is [^ ]+/moved its location%?%)\n$"), out)
    code, out = runner.run("send --secret s --ca-file " .. q(dir .. "/ca.crt") .. " "
      .. q(url("/length", true)) .. " " .. q(body_file))
    assert.are.equal(0, code, out)
    code, out = runner.run("send --secret s " .. q(url("/length", true)) .. " " .. q(body_file))
    assert.are.equal(1, code)   -- the system's CAs do not know the test CA
    assert.truthy(out:find("failed: ", 1, true), out)
  end)
end)

-- The answers of a peer that misbehaves (spec/hostile.lua): each is refused, within the
-- request's time limit, and without holding more than the limits in memory.
local HOSTILE = {
  -- path, what err says, its code; slow: the peer stalls (the case takes the timeout); flood: it sends
  -- 160 MiB without a line end
  { "/drip-headers", "reading the headers: timeout (the request's 1000 ms ran out)", "timeout", slow = true },
  { "/drip-body", "reading the body: timeout (the request's 1000 ms ran out)", "timeout", slow = true },
  { "/continue-forever", "more than 10 1xx answers", "limit" },
  { "/trailers-forever", "more than 100 trailers", "limit" },
  { "/many-headers", "more than 100 headers", "limit" },
  { "/long-status", "reading the status line: a line over 8192 bytes", "limit", flood = true },
  { "/long-header", "reading the headers: a line over 8192 bytes", "limit", flood = true },
  { "/long-chunk-ext", "reading a chunk's size: a line over 8192 bytes", "limit", flood = true },
  { "/long-trailer", "reading the trailers: a line over 8192 bytes", "limit", flood = true },
  { "/status-2000", 'not an HTTP/1.x status line: "HTTP/1.1 2000 OK"', "protocol" },
  { "/status-099", "a status out of 100-599: 099", "protocol" },
  { "/te-notchunked", 'a Transfer-Encoding other than chunked: "notchunked"', "protocol" },
  { "/te-and-length", "both Transfer-Encoding and Content-Length", "protocol" },
  { "/cr-in-header", "a control byte in the value of X-Odd", "protocol" },
  { "/space-before-colon", 'a header line that is not one: "Content-Length : 0"', "protocol" },
}
local MiB = 1024

-- Checks one hostile case's outcome: { err =, took = (s), grew = (KiB of peak memory) }.
local function check_hostile(case, outcome, hostile)
  local path, message = case[1], case[2]
  assert.is_nil(outcome.status, path)
  assert.truthy(outcome.err and outcome.err:find(message, 1, true),
    path .. ": " .. tostring(outcome.err))
  assert.are.equal(case[3], outcome.code, path)
  if case.slow then
    assert.truthy(outcome.took >= 0.9 and outcome.took < 2.5, path .. " took " .. outcome.took)
  else
    assert.truthy(outcome.took < 2, path .. " took " .. outcome.took)
  end
  if case.flood then
    -- The peer could send only what the client read and the sockets' buffers held.
    assert.truthy(servers.wait_for(function() return hostile:sent(path) end, 5), path)
    assert.truthy(hostile:sent(path) < 32 * MiB * 1024, path .. ": " .. tostring(hostile:sent(path)))
    assert.truthy(outcome.grew < 32 * MiB, path .. ": peak memory grew " .. outcome.grew .. " KiB")
  end
end

describe("http.request against a hostile peer", function()
  local dir, hostile

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
  end)

  teardown(function()
    if hostile then
      hostile:stop()
    end
    servers.remove_dir(dir)
  end)

  local function url(path)
    return "http://127.0.0.1:" .. hostile.port .. path
  end

  for _, case in ipairs(HOSTILE) do
    it("refuses " .. case[1], function()
      local socket = require "socket"
      local before, started = servers.peak_memory(), socket.gettime()
      local res, err, code = http.request({ url = url(case[1]), timeout = 1000 })
      check_hostile(case, { status = res and res.status, err = err, code = code,
        took = socket.gettime() - started, grew = servers.peak_memory() - before }, hostile)
    end)
  end

  it("sends a control byte, a space or a byte over 0x7E of the URL percent-encoded", function()
    local res = assert(http.request({
      url = url("/echo-raw?email=a@example.com\r\nX-Injected: yes\0\127\128 \195\169#frag"),
      query = { ["e mail"] = "a@b.c&d=e", list = { 1, "two" } } }))
    local head = assert((loadstring or load)("return " .. res.body))()
    assert.are.equal("GET /echo-raw?email=a@example.com%0D%0AX-Injected:%20yes%00%7F%80%20%C3%A9"
      .. "&e%20mail=a%40b.c%26d%3De&list=1&list=two HTTP/1.1", head:match("^[^\n]*"))
    assert.is_nil(head:find("\nX-Injected", 1, true))
  end)

  it("does not keep a connection on which the peer said more than its answer", function()
    local res = assert(http.request({ url = url("/extra-bytes") }))
    assert.are.equal("ok", res.body)
  end)
end)

describe("http.request against a hostile peer, in nginx (cosockets)", function()
  local runtime = os.getenv("JICOO_RUNTIME")
  if runtime and runtime ~= "luajit" then
    pending("runs once, in the luajit run: nginx's side does not depend on the runtime")
    return
  end
  local dir, hostile, server

  setup(function()
    dir = servers.temp_dir()
    hostile = servers.hostile(dir)
    local _, log
    server, _, log = servers.tls_nginx(dir, "hostile", { plain = true,
      http = { "  lua_package_path " .. q(servers.root .. "/lua/?.lua;" .. servers.root
        .. "/lua/?/init.lua;;") .. ";" },
      locations = { [[
    location = /try { content_by_lua_block {
      local http = require "jicoo.net.http"
      local args = ngx.req.get_uri_args()
      local function peak()
        local file = io.open("/proc/self/status")
        local text = file:read("*a")
        file:close()
        return tonumber(text:match("VmHWM:%s*(%d+)"))
      end
      local outcome = { results = {} }
      local before = peak()
      ngx.update_time()
      local started = ngx.now()
      local methods = {}
      for method in (args.methods or "GET"):gmatch("%u+") do
        methods[#methods + 1] = method
      end
      for i, method in ipairs(methods) do
        local res, err, code = http.request({ url = "http://127.0.0.1:]] .. hostile.port
          .. [[" .. args.path, method = method, timeout = tonumber(args.timeout) })
        outcome.results[i] = { status = res and res.status, body = res and res.body, err = err,
          code = code }
      end
      ngx.update_time()
      outcome.took, outcome.grew = ngx.now() - started, peak() - before
      ngx.say(require("cjson").encode(outcome))
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

  local function try(query)
    local body_file = dir .. "/answer.json"
    support.run("curl -s --max-time 20 -o " .. q(body_file) .. " "
      .. q("http://127.0.0.1:" .. server.port .. "/try?" .. query))
    local outcome = require("cjson").decode(support.read(body_file))
    for i, result in ipairs(outcome.results) do
      outcome[i] = result
    end
    return outcome
  end

  for _, case in ipairs(HOSTILE) do
    it("refuses " .. case[1], function()
      local outcome = try("timeout=1000&path=" .. case[1])
      check_hostile(case, { status = outcome[1].status, err = outcome[1].err,
        code = outcome[1].code, took = outcome.took,
        grew = outcome.grew }, hostile)
    end)
  end

  it("sends a GET again on a new connection when a pooled one was closed, never a POST", function()
    local function count(line)
      local n = 0
      for _, event in ipairs(hostile:events()) do
        n = n + (event == "request " .. line and 1 or 0)
      end
      return n
    end
    -- Each connection is answered once; the next request on it is read, then it is closed.
    local outcome = try("path=/then-close&methods=GET,GET")
    assert.are.equal(200, outcome[1].status)
    assert.are.equal(200, outcome[2].status, tostring(outcome[2].err))
    assert.are.equal(3, count("GET /then-close HTTP/1.1"))   -- the second one twice
    outcome = try("path=/then-close&methods=GET,POST")
    assert.are.equal(200, outcome[1].status, tostring(outcome[1].err))
    assert.are.equal(5, count("GET /then-close HTTP/1.1"))
    assert.is_nil(outcome[2].status)
    assert.truthy(outcome[2].err:find("a POST is not sent twice", 1, true), outcome[2].err)
    assert.are.equal(1, count("POST /then-close HTTP/1.1"))
  end)
end)
