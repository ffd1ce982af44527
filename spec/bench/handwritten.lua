-- The nginx benchmark's competitor (spec/bench/nginx.sh): a Jicoo receiver written by hand the
-- way a careful OpenResty user would, without this library. It checks what the library checks
-- on the way in: the signature header (t= and every v1=), the time against a tolerance,
-- HMAC-SHA256 of "t.body" in constant-time comparison, the payload against the contract
-- (spec/bench/validator.lua: cjson plus the rules in Lua), and a copy of a delivery already
-- taken (a shared-dict add on event/uid/createdAt). Then one handler that does nothing, and a
-- JSON answer from cjson. The HMAC is OpenSSL's, through LuaJIT's FFI, in the libcrypto nginx
-- is linked with.
-- luacheck: globals ngx
local ffi = require "ffi"
local cjson = require "cjson"
local validator = require "validator"

local ngx = ngx
local tonumber = tonumber
local string_byte = string.byte
local string_gmatch = string.gmatch
local string_match = string.match
local bit_bor, bit_bxor = bit.bor, bit.bxor

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local crypto = ffi.C
if not pcall(function() return crypto.HMAC end) then
  crypto = ffi.load("crypto")
end
local SHA256 = crypto.EVP_sha256()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

local _M = {}

local TOLERANCE = tonumber(os.getenv("JICOO_WEBHOOK_TOLERANCE") or "") or 300
local CLAIM_TTL = 3 * 24 * 3600
local HEX = {}
for i = 0, 255 do
  HEX[i] = string.format("%02x", i)
end

-- The lower-case hex HMAC-SHA256 of message under secret.
local function hmac_hex(secret, message)
  crypto.HMAC(SHA256, secret, #secret, message, #message, digest, digest_len)
  local parts = {}
  for i = 0, 31 do
    parts[i + 1] = HEX[digest[i]]
  end
  return table.concat(parts)
end

-- Compares two strings in time that depends on their length only.
local function same(a, b)
  if #a ~= #b then
    return false
  end
  local diff = 0
  for i = 1, #a do
    diff = bit_bor(diff, bit_bxor(string_byte(a, i), string_byte(b, i)))
  end
  return diff == 0
end

local function verified(header, body, secret)
  if not header then
    return false
  end
  local t = tonumber(string_match(header, "^t=(%d+)") or string_match(header, ",%s*t=(%d+)"))
  if not t or math.abs(ngx.time() - t) > TOLERANCE then
    return false
  end
  local expected = hmac_hex(secret, t .. "." .. body)
  for v1 in string_gmatch(header, "v1=(%x+)") do
    if same(v1, expected) then
      return true
    end
  end
  return false
end

local function handler() end

local function send(status, answer)
  local body = cjson.encode(answer)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.header["Content-Length"] = #body
  ngx.header["Cache-Control"] = "no-store"
  ngx.print(body)
end

function _M.serve(secret)
  local headers = ngx.req.get_headers(100)
  local length = tonumber(headers["content-length"])
  if length and length > 1048576 then
    return send(413, { ok = false, error = "too_large" })
  end
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    return send(400, { ok = false, error = "no_body" })
  end
  local header = headers["jicoo-webhook-signature"]
  if type(header) == "table" then
    header = header[1]
  end
  if not verified(header, body, secret) then
    return send(401, { ok = false, error = "bad_signature" })
  end
  local doc, err = validator.validate(body)
  if not doc then
    return send(400, { ok = false, error = "invalid_payload", message = err })
  end
  local key = doc.event .. "/" .. doc.object.uid .. "/" .. doc.createdAt
  local ok, why = ngx.shared.bench_claims:add("hw:" .. key, true, CLAIM_TTL)
  if not ok then
    if why == "exists" then
      return send(200, { ok = true, result = "duplicate", event = doc.event })
    end
    return send(500, { ok = false, error = "store_failed" })
  end
  handler(doc)
  return send(200, { ok = true, result = "handled", event = doc.event })
end

return _M
