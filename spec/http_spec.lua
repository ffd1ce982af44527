-- jicoo.webhook.http outside nginx (LuaSocket, LuaSec), against a real nginx on 127.0.0.1 that
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

local http = require "jicoo.webhook.http"
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
    assert.truthy(out:find("-> 302", 1, true), out)
    code, out = runner.run("send --secret s --ca-file " .. q(dir .. "/ca.crt") .. " "
      .. q(url("/length", true)) .. " " .. q(body_file))
    assert.are.equal(0, code, out)
    code, out = runner.run("send --secret s " .. q(url("/length", true)) .. " " .. q(body_file))
    assert.are.equal(1, code)   -- the system's CAs do not know the test CA
    assert.truthy(out:find("failed: ", 1, true), out)
  end)
end)
