-- Jicoo-Webhook-Signature: argument checks in Lua, HMAC and header parsing in the C core.
local core = require "jicoo.webhook.core"

local type = type
local error = error
local pairs = pairs
local tostring = tostring
local floor = math.floor
local huge = math.huge
local os_time = os.time
local concat = table.concat
local core_verify = core.verify
local core_sign = core.sign

local _M = {}

-- Seconds either side of the receiver's clock a delivery's t may be. Exposed for reading;
-- changing the field changes nothing (no shared mutable defaults in one nginx worker).
local DEFAULT_TOLERANCE = 300
_M.DEFAULT_TOLERANCE = DEFAULT_TOLERANCE

local VERIFY_OPTIONS = { tolerance = true, now = true }

-- Misuse raises at the caller of verify/sign (level 2 from there).
local function misuse(msg)
  error("jicoo.webhook: " .. msg, 3)
end

local function is_number(v)
  return type(v) == "number" and v == v
end

-- nil when secrets is a non-empty string or a non-empty list of them, else what is wrong
-- (also the router's check of its secrets option).
local function secrets_problem(secrets)
  if type(secrets) == "string" then
    if secrets == "" then
      return "bad secret (empty string)"
    end
    return nil
  end
  if type(secrets) ~= "table" then
    return "bad secrets (string or list of strings expected, got " .. type(secrets) .. ")"
  end
  local n = #secrets
  if n == 0 then
    return "bad secrets (empty list)"
  end
  for i = 1, n do
    local s = secrets[i]
    if type(s) ~= "string" or s == "" then
      return "bad secrets[" .. i .. "] (non-empty string expected)"
    end
  end
  return nil
end

_M.secrets_problem = secrets_problem

-- A header sent more than once arrives from ngx.req.get_headers() as a list; HTTP joins such
-- field lines with ",", which is also what splits our elements.
-- Returns the header as one string (or nil), or false and what is wrong.
local function header_value(header)
  if header == nil or type(header) == "string" then
    return header
  end
  if type(header) == "table" then
    for i = 1, #header do
      if type(header[i]) ~= "string" then
        return false, "bad header[" .. i .. "] (string expected)"
      end
    end
    return concat(header, ",")
  end
  return false, "bad header (string or nil expected, got " .. type(header) .. ")"
end

-- ok, msg, code = verify(body, header, secrets [, opts])
function _M.verify(body, header, secrets, opts)
  if type(body) ~= "string" then
    misuse("bad body (string expected, got " .. type(body) .. ")")
  end
  local problem
  header, problem = header_value(header)
  if header == false then
    misuse(problem)
  end
  problem = secrets_problem(secrets)
  if problem then
    misuse(problem)
  end
  local tolerance, now = DEFAULT_TOLERANCE, nil
  if opts ~= nil then
    if type(opts) ~= "table" then
      misuse("bad opts (table expected, got " .. type(opts) .. ")")
    end
    for k in pairs(opts) do
      if not VERIFY_OPTIONS[k] then
        misuse("unknown option '" .. tostring(k) .. "'")
      end
    end
    if opts.tolerance ~= nil then
      tolerance = opts.tolerance
      if not is_number(tolerance) or tolerance < 0 then
        misuse("bad option 'tolerance' (non-negative number of seconds expected)")
      end
    end
    if opts.now ~= nil then
      now = opts.now
      if not is_number(now) or now == huge or now == -huge then
        misuse("bad option 'now' (Unix seconds expected)")
      end
    end
  end
  if now == nil then
    now = os_time()
  end
  return core_verify(body, header, secrets, tolerance, now)
end

-- header = sign(secret, body [, t])
function _M.sign(secret, body, t)
  if type(secret) ~= "string" or secret == "" then
    misuse("bad secret (non-empty string expected)")
  end
  if type(body) ~= "string" then
    misuse("bad body (string expected, got " .. type(body) .. ")")
  end
  if t == nil then
    t = os_time()
  elseif not is_number(t) or t < 0 or t ~= floor(t) or t >= 2 ^ 53 then
    misuse("bad t (non-negative integer of Unix seconds expected)")
  end
  return core_sign(secret, body, t)
end

return _M
