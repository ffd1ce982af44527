-- Jicoo-Webhook-Signature: verify, sign and construct through the public module, and the
-- HMAC primitive of the C core. Expected signatures come from an independent implementation,
-- the openssl command line, run at test time.
local webhook = require "jicoo.webhook"
local core = require "jicoo.webhook.core"

local FIXTURES = require("support").fixtures
local FIXTURE_DIRS = { "valid", "lenient", "invalid" }

local T = 1662520836
local SECRET = "whsec_3f9a1c77e2b04d5b8a6e"
local OTHER_SECRET = "whsec_another_endpoint"
local BODY = '{"event":"guest_booked","createdAt":"2022-09-07T03:20:36.000Z"}'

local function to_hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function from_hex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_temp(data)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

local function run(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

-- hex HMAC-SHA256(key, data) by `openssl dgst`; the key goes as hex so any byte is allowed
local function openssl_hmac(key, data)
  local path = write_temp(data)
  local out = run("openssl dgst -sha256 -mac HMAC -macopt hexkey:" .. to_hex(key) .. " < " .. path)
  os.remove(path)
  local hex = out:match("(%x+)%s*$")
  assert(hex and #hex == 64, "unexpected openssl output: " .. out)
  return hex
end

-- the signature Jicoo would send, computed as the issue writes it: (printf 't.'; cat body) | openssl
local function openssl_signature(secret, t, body)
  local path = write_temp(body)
  local out = run("(printf '%s.' " .. t .. "; cat " .. path .. ") | openssl dgst -sha256 -mac HMAC"
    .. " -macopt hexkey:" .. to_hex(secret))
  os.remove(path)
  local hex = out:match("(%x+)%s*$")
  assert(hex and #hex == 64, "unexpected openssl output: " .. out)
  return hex
end

local function fixture_files()
  local files = {}
  for _, dir in ipairs(FIXTURE_DIRS) do
    local listing = run("ls " .. FIXTURES .. "/" .. dir)
    for name in listing:gmatch("[^\n]+") do
      if name:match("%.json$") then
        files[#files + 1] = dir .. "/" .. name
      end
    end
  end
  assert(#files > 0, "no fixtures found under " .. FIXTURES)
  return files
end

local GOOD = openssl_signature(SECRET, T, BODY)
local OTHER = openssl_signature(OTHER_SECRET, T, BODY)
local ZEROS = string.rep("0", 64)

describe("core.hmac_sha256 (RFC 4231 test cases)", function()
  local long_key = string.rep("\170", 131)
  local cases = {
    { n = 1, key = string.rep("\11", 20), data = "Hi There",
      mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { n = 2, key = "Jefe", data = "what do ya want for nothing?",
      mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { n = 3, key = string.rep("\170", 20), data = string.rep("\221", 50),
      mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { n = 4, key = from_hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
      data = string.rep("\205", 50),
      mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { n = 5, key = string.rep("\12", 20), data = "Test With Truncation",
      mac = "a3b6167473100ee06e0c796c2955552b" }, -- the RFC gives the first 128 bits only
    { n = 6, key = long_key, data = "Test Using Larger Than Block-Size Key - Hash Key First",
      mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { n = 7, key = long_key,
      data = "This is a test using a larger than block-size key and a larger than block-size data."
        .. " The key needs to be hashed before being used by the HMAC algorithm.",
      mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for _, c in ipairs(cases) do
    it("test case " .. c.n, function()
      local mac = core.hmac_sha256(c.key, c.data)
      assert.equal(32, #mac)
      assert.equal(c.mac, to_hex(mac):sub(1, #c.mac))
    end)
  end

  it("agrees with openssl on keys and messages holding NUL bytes", function()
    local key, data = "k\0e\0y", "a\0b\0\0c"
    assert.equal(openssl_hmac(key, data), to_hex(core.hmac_sha256(key, data)))
  end)
end)

describe("webhook.sign and webhook.verify against openssl", function()
  local all_bytes = {}
  for b = 0, 255 do
    all_bytes[#all_bytes + 1] = string.char(b)
  end
  local bodies = {
    { name = "UTF-8", body = '{"name":"山田 太郎","note":"café ✓ 🎉"}' },
    { name = "NUL bytes", body = '{"a":"x\0y"}\0\0trailing' },
    { name = "CRLF line ends", body = '{\r\n  "event": "guest_booked"\r\n}\r\n' },
    { name = "an empty body", body = "" },
    { name = "every byte value", body = table.concat(all_bytes) },
    { name = "a 64 KiB body", body = string.rep("0123456789abcdef", 4096) },
  }
  for _, path in ipairs(fixture_files()) do
    bodies[#bodies + 1] = { name = "fixture " .. path, body = read_file(FIXTURES .. "/" .. path) }
  end

  for _, c in ipairs(bodies) do
    it("signs and verifies " .. c.name, function()
      local expected = openssl_signature(SECRET, T, c.body)
      local header = webhook.sign(SECRET, c.body, T)
      assert.equal("t=" .. T .. ",v1=" .. expected, header)
      assert.is_true(webhook.verify(c.body, header, SECRET, { now = T }))
      assert.is_true(webhook.verify(c.body, "t=" .. T .. ",v1=" .. expected, SECRET, { now = T }))
    end)
  end

  it("signs with the current time when t is omitted", function()
    local before = os.time()
    local header = webhook.sign(SECRET, BODY)
    local after = os.time()
    local t = tonumber(header:match("^t=(%d+),v1=%x+$"))
    assert.is_truthy(t and t >= before and t <= after)
    assert.is_true(webhook.verify(BODY, header, SECRET))
  end)
end)

describe("webhook.verify header handling", function()
  local t = tostring(T)
  local cases = {
    -- accepted
    { "plain", "t=" .. t .. ",v1=" .. GOOD, true },
    { "upper-case hex", "t=" .. t .. ",v1=" .. GOOD:upper(), true },
    { "spaces around elements", " t=" .. t .. " ,  v1=" .. GOOD .. "  ", true },
    { "tabs around elements", "\tt=" .. t .. ",\tv1=" .. GOOD .. "\t", true },
    { "spaces around '='", "t = " .. t .. ", v1 = " .. GOOD, true },
    { "v1 before t", "v1=" .. GOOD .. ",t=" .. t, true },
    { "several v1, the last matches",
      "t=" .. t .. ",v1=" .. ZEROS .. ",v1=" .. OTHER .. ",v1=" .. GOOD, true },
    { "several v1, the first matches", "t=" .. t .. ",v1=" .. GOOD .. ",v1=" .. ZEROS, true },
    { "unknown schemes ignored", "t=" .. t .. ",v0=abc,v1=" .. GOOD .. ",v2=" .. ZEROS .. ",x=y", true },
    { "unknown scheme with a non-hex value", "t=" .. t .. ",v2=not hex at all,v1=" .. GOOD, true },
    { "empty elements ignored", "t=" .. t .. ",,v1=" .. GOOD .. ",", true },
    -- a v1 that cannot be a signature, beside one that matches, is passed over (as Stripe's
    -- scheme reads it): the good one must still match
    { "a bad v1 beside a good one", "t=" .. t .. ",v1=" .. GOOD .. ",v1=potato", true },
    { "a bad v1 before a good one", "t=" .. t .. ",v1=xyz,v1=" .. GOOD, true },
    { "a bad v1 beside a wrong one", "t=" .. t .. ",v1=potato,v1=" .. OTHER, "mismatch" },
    -- missing_header
    { "nil header", nil, "missing_header" },
    { "empty header", "", "missing_header" },
    { "blank header", "   \t ", "missing_header" },
    -- malformed_header
    { "no t", "v1=" .. GOOD, "malformed_header" },
    { "empty t", "t=,v1=" .. GOOD, "malformed_header" },
    { "negative t", "t=-" .. t .. ",v1=" .. GOOD, "malformed_header" },
    { "t with a plus sign", "t=+" .. t .. ",v1=" .. GOOD, "malformed_header" },
    { "t = +1", "t=+1,v1=" .. GOOD, "malformed_header" },
    { "t overflowing 64 bits", "t=99999999999999999999,v1=" .. GOOD, "malformed_header" },
    { "t one past the largest int64", "t=9223372036854775808,v1=" .. GOOD, "malformed_header" },
    { "t with a fraction", "t=" .. t .. ".5,v1=" .. GOOD, "malformed_header" },
    { "t in exponent form", "t=1.6e9,v1=" .. GOOD, "malformed_header" },
    { "t in hex", "t=0x62183404,v1=" .. GOOD, "malformed_header" },
    { "t with a space inside", "t=1662 520836,v1=" .. GOOD, "malformed_header" },
    { "two t elements", "t=" .. t .. ",t=" .. t .. ",v1=" .. GOOD, "malformed_header" },
    { "v1 of 63 characters", "t=" .. t .. ",v1=" .. GOOD:sub(2), "malformed_header" },
    { "v1 of 65 characters", "t=" .. t .. ",v1=" .. GOOD .. "0", "malformed_header" },
    { "v1 with a non-hex character", "t=" .. t .. ",v1=" .. GOOD:sub(2) .. "g", "malformed_header" },
    { "empty v1", "t=" .. t .. ",v1=", "malformed_header" },
    { "bad v1s and no good one", "t=" .. t .. ",v1=xyz,v1=potato", "malformed_header" },
    { "an element without '='", "t=" .. t .. ",v1=" .. GOOD .. ",junk", "malformed_header" },
    { "a bare value", GOOD, "malformed_header" },
    -- no_signature
    { "only t", "t=" .. t, "no_signature" },
    { "only unknown schemes", "t=" .. t .. ",v0=" .. GOOD .. ",v2=" .. GOOD, "no_signature" },
    { "V1 is not v1", "t=" .. t .. ",V1=" .. GOOD, "no_signature" },
    -- mismatch
    { "signature of another secret", "t=" .. t .. ",v1=" .. OTHER, "mismatch" },
    { "all-zero signature", "t=" .. t .. ",v1=" .. ZEROS, "mismatch" },
    { "tampered t (+1)", "t=" .. (T + 1) .. ",v1=" .. GOOD, "mismatch" },
    { "tampered t (-1)", "t=" .. (T - 1) .. ",v1=" .. GOOD, "mismatch" },
    { "t with a leading zero (t is signed as sent)", "t=0" .. t .. ",v1=" .. GOOD, "mismatch" },
    { "one hex digit changed", "t=" .. t .. ",v1=" .. GOOD:sub(1, 63) .. (GOOD:sub(64) == "0" and "1" or "0"),
      "mismatch" },
  }
  for _, c in ipairs(cases) do
    local name, header, expect = c[1], c[2], c[3]
    it(name .. " -> " .. tostring(expect), function()
      local ok, msg, code = webhook.verify(BODY, header, SECRET, { now = T })
      if expect == true then
        assert.is_true(ok)
        assert.is_nil(msg)
      else
        assert.is_false(ok)
        assert.equal(expect, code)
        assert.equal("string", type(msg))
        assert.equal(expect .. ":", msg:match("^[%w_]+:"))
        assert.is_nil(msg:find("\n"))
      end
    end)
  end

  it("joins a header sent twice (a list) the way HTTP does", function()
    assert.is_true(webhook.verify(BODY, { "t=" .. t, "v1=" .. GOOD }, SECRET, { now = T }))
  end)
end)

describe("webhook.verify messages", function()
  it("says when an expired signature was made, how far from now, and the tolerance", function()
    local ok, msg = webhook.verify(BODY, "t=" .. T .. ",v1=" .. GOOD, SECRET, { now = T + 400 })
    assert.is_false(ok)
    assert.are.equal("expired: t=" .. T .. " is 400 s before now (" .. (T + 400)
      .. "), over the tolerance of 300 s", msg)
  end)

  it("refuses as misuse a secret with whitespace around it (a copy-paste)", function()
    for _, secret in ipairs({ SECRET .. " ", " " .. SECRET, SECRET .. "\n", { "ok", SECRET .. "\t" } }) do
      local ok, err = pcall(webhook.verify, BODY, "t=" .. T .. ",v1=" .. GOOD, secret, { now = T })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("whitespace", 1, true), tostring(err))
    end
    assert.has_error(function() webhook.router({ secrets = SECRET .. " " }) end)
  end)

  it("names the call and the options it takes for an unknown option", function()
    local ok, err = pcall(webhook.verify, BODY, nil, SECRET, { tolerence = 5 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("verify: unknown option 'tolerence' (it takes tolerance, now)",
      1, true), tostring(err))
  end)
end)

describe("webhook.verify body tampering", function()
  local header = "t=" .. T .. ",v1=" .. GOOD
  local cases = {}
  for i = 1, #BODY do
    local b = BODY:byte(i)
    cases[#cases + 1] = { "byte " .. i .. " changed",
      BODY:sub(1, i - 1) .. string.char((b + 1) % 256) .. BODY:sub(i + 1) }
  end
  cases[#cases + 1] = { "last byte removed", BODY:sub(1, -2) }
  cases[#cases + 1] = { "a byte appended", BODY .. " " }
  cases[#cases + 1] = { "a NUL appended", BODY .. "\0" }
  cases[#cases + 1] = { "a byte prepended", " " .. BODY }
  cases[#cases + 1] = { "empty body", "" }
  for _, c in ipairs(cases) do
    it(c[1] .. " -> mismatch", function()
      local ok, _, code = webhook.verify(c[2], header, SECRET, { now = T })
      assert.is_false(ok)
      assert.equal("mismatch", code)
    end)
  end
end)

describe("webhook.verify secrets", function()
  local header = "t=" .. T .. ",v1=" .. GOOD
  local cases = {
    { "the right secret", SECRET, true },
    { "another secret", OTHER_SECRET, "mismatch" },
    { "rotation, old secret first", { OTHER_SECRET, SECRET }, true },
    { "rotation, new secret first", { SECRET, OTHER_SECRET }, true },
    { "a list of one", { SECRET }, true },
    { "a list of wrong secrets", { OTHER_SECRET, "whsec_x", "y" }, "mismatch" },
    { "a secret that is a prefix of the right one", SECRET:sub(1, -2), "mismatch" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. " -> " .. tostring(c[3]), function()
      local ok, _, code = webhook.verify(BODY, header, c[2], { now = T })
      if c[3] == true then
        assert.is_true(ok)
      else
        assert.is_false(ok)
        assert.equal(c[3], code)
      end
    end)
  end

  it("stays right when calls alternate between secrets (the core keeps the last key ready)", function()
    local h = "t=" .. T .. ",v1=" .. GOOD
    for _ = 1, 3 do
      assert.is_true(webhook.verify(BODY, h, SECRET, { now = T }))
      assert.is_false(webhook.verify(BODY, h, OTHER_SECRET, { now = T }))
      assert.is_true(webhook.verify(BODY, h, SECRET, { now = T }))
      assert.equal(to_hex(core.hmac_sha256(OTHER_SECRET, T .. "." .. BODY)), OTHER)
      assert.is_true(webhook.verify(BODY, h, { OTHER_SECRET, SECRET }, { now = T }))
      assert.is_false(webhook.verify(BODY, h, SECRET:sub(1, -2), { now = T }))
    end
  end)

  it("accepts either of two v1 signed with two secrets (Jicoo rotating)", function()
    local h = "t=" .. T .. ",v1=" .. OTHER .. ",v1=" .. GOOD
    assert.is_true(webhook.verify(BODY, h, OTHER_SECRET, { now = T }))
    assert.is_true(webhook.verify(BODY, h, SECRET, { now = T }))
    assert.is_false(webhook.verify(BODY, h, "whsec_neither", { now = T }))
  end)
end)

describe("webhook.verify tolerance", function()
  local header = "t=" .. T .. ",v1=" .. GOOD
  -- age = now - t (positive: the delivery is old; negative: t is in the receiver's future)
  local cases = {
    { age = 0, tolerance = nil, expect = true },
    { age = 300, tolerance = nil, expect = true },
    { age = -300, tolerance = nil, expect = true },
    { age = 301, tolerance = nil, expect = "expired" },
    { age = -301, tolerance = nil, expect = "expired" },
    { age = 300.5, tolerance = nil, expect = "expired" },
    { age = 60, tolerance = 60, expect = true },
    { age = 61, tolerance = 60, expect = "expired" },
    { age = -61, tolerance = 60, expect = "expired" },
    { age = 10 ^ 9, tolerance = 0, expect = true },
    { age = -(10 ^ 9), tolerance = 0, expect = true },
    { age = -T, tolerance = 0, expect = true },
    { age = 86400 * 365, tolerance = 86400 * 366, expect = true },
  }
  for _, c in ipairs(cases) do
    local name = ("age %s s, tolerance %s -> %s"):format(c.age, tostring(c.tolerance), tostring(c.expect))
    it(name, function()
      local ok, msg, code = webhook.verify(BODY, header, SECRET, { now = T + c.age, tolerance = c.tolerance })
      if c.expect == true then
        assert.is_true(ok)
      else
        assert.is_false(ok)
        assert.equal(c.expect, code)
        assert.equal("expired:", msg:match("^[%w_]+:"))
      end
    end)
  end

  it("reports mismatch, not expired, for a forged signature with an old t", function()
    local ok, _, code = webhook.verify(BODY, "t=" .. T .. ",v1=" .. OTHER, SECRET, { now = T + 10 ^ 6 })
    assert.is_false(ok)
    assert.equal("mismatch", code)
  end)

  it("uses the real clock when opts.now is absent", function()
    local ok, _, code = webhook.verify(BODY, header, SECRET)
    assert.is_false(ok)
    assert.equal("expired", code)
    assert.is_true(webhook.verify(BODY, webhook.sign(SECRET, BODY), SECRET))
  end)
end)

describe("misuse raises", function()
  local header = "t=" .. T .. ",v1=" .. GOOD
  local cases = {
    { "verify: body not a string", function() webhook.verify(nil, header, SECRET) end },
    { "verify: body a number", function() webhook.verify(42, header, SECRET) end },
    { "verify: header a number", function() webhook.verify(BODY, 42, SECRET) end },
    { "verify: header list with a non-string", function() webhook.verify(BODY, { "t=1", 2 }, SECRET) end },
    { "verify: no secrets", function() webhook.verify(BODY, header, nil) end },
    { "verify: empty secret", function() webhook.verify(BODY, header, "") end },
    { "verify: empty list of secrets", function() webhook.verify(BODY, header, {}) end },
    { "verify: empty secret in the list", function() webhook.verify(BODY, header, { SECRET, "" }) end },
    { "verify: non-string in the list", function() webhook.verify(BODY, header, { SECRET, 42 }) end },
    { "verify: secrets a number", function() webhook.verify(BODY, header, 42) end },
    { "verify: opts not a table", function() webhook.verify(BODY, header, SECRET, 300) end },
    { "verify: unknown option", function() webhook.verify(BODY, header, SECRET, { tolerence = 5 }) end },
    { "verify: parse option", function() webhook.verify(BODY, header, SECRET, { level = "strict" }) end },
    { "verify: tolerance a string",
      function() webhook.verify(BODY, header, SECRET, { tolerance = "300" }) end },
    { "verify: negative tolerance", function() webhook.verify(BODY, header, SECRET, { tolerance = -1 }) end },
    { "verify: NaN tolerance", function() webhook.verify(BODY, header, SECRET, { tolerance = 0 / 0 }) end },
    { "verify: now a string", function() webhook.verify(BODY, header, SECRET, { now = "now" }) end },
    { "verify: NaN now", function() webhook.verify(BODY, header, SECRET, { now = 0 / 0 }) end },
    { "sign: empty secret", function() webhook.sign("", BODY, T) end },
    { "sign: no secret", function() webhook.sign(nil, BODY, T) end },
    { "sign: body not a string", function() webhook.sign(SECRET, { BODY }, T) end },
    { "sign: negative t", function() webhook.sign(SECRET, BODY, -1) end },
    { "sign: fractional t", function() webhook.sign(SECRET, BODY, 1.5) end },
    { "sign: t a string", function() webhook.sign(SECRET, BODY, "1662520836") end },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      assert.has_error(c[2])
    end)
  end

  it("blames the caller (error level 2)", function()
    local ok, err = pcall(function() webhook.verify(BODY, header, "") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("signature_spec", 1, true))
    ok, err = pcall(function() webhook.sign("", BODY) end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("signature_spec", 1, true))
  end)
end)

describe("webhook.construct", function()
  local valid_dir = FIXTURES .. "/valid/"
  local invalid_dir = FIXTURES .. "/invalid/"

  it("parses every valid fixture once its signature verifies", function()
    for _, path in ipairs(fixture_files()) do
      if path:match("^valid/") then
        local body = read_file(FIXTURES .. "/" .. path)
        local header = "t=" .. T .. ",v1=" .. openssl_signature(SECRET, T, body)
        local ev, msg = webhook.construct(body, header, { OTHER_SECRET, SECRET }, { now = T })
        assert.is_table(ev, path .. ": " .. tostring(msg))
        assert.equal(body:match('"event"%s*:%s*"([^"]+)"'), ev.event)
      end
    end
  end)

  it("passes parse options through", function()
    local body = read_file(valid_dir .. "strict_guest_booked_full.json")
    local ev, msg = webhook.construct(body, webhook.sign(SECRET, body, T), SECRET,
      { now = T + 300, tolerance = 300, level = "strict" })
    assert.is_table(ev, msg)
  end)

  local invalid_body = read_file(invalid_dir .. "syntax_trailing_comma.json")
  local signed = "t=" .. T .. ",v1=" .. openssl_signature(SECRET, T, invalid_body)
  local cases = {
    { "forged signature", "t=" .. T .. ",v1=" .. ZEROS, { now = T }, "mismatch" },
    { "signature of another secret", "t=" .. T .. ",v1=" .. openssl_signature(OTHER_SECRET, T, invalid_body),
      { now = T }, "mismatch" },
    { "no header", nil, { now = T }, "missing_header" },
    { "malformed header", "t=abc,v1=" .. ZEROS, { now = T }, "malformed_header" },
    { "no v1", "t=" .. T, { now = T }, "no_signature" },
    { "replayed too late", signed, { now = T + 301 }, "expired" },
    { "authentic, so parsed", signed, { now = T }, "syntax" },
  }
  for _, c in ipairs(cases) do
    it("on an unparsable body: " .. c[1] .. " -> " .. c[4], function()
      local ev, msg, info = webhook.construct(invalid_body, c[2], SECRET, c[3])
      assert.is_nil(ev)
      assert.equal("string", type(msg))
      assert.is_table(info)
      assert.equal(c[4], info.code)
      assert.equal(c[4] .. ":", msg:match("^[%w_]+:"))
    end)
  end

  it("raises on misuse like verify does", function()
    assert.has_error(function() webhook.construct(BODY, signed, "", { now = T }) end)
    assert.has_error(function() webhook.construct(nil, signed, SECRET, { now = T }) end)
  end)
end)
