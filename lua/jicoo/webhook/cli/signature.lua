-- jicoo-webhook sign and verify: the header Jicoo would send for a file, and why a header does
-- or does not verify; and the secret every command that signs takes (--secret, or
-- JICOO_WEBHOOK_SECRET).
local tostring = tostring
local require = require
local string_find = string.find
local os_getenv = os.getenv

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out, read = cli_io.out, cli_io.err, cli_io.read
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

local webhook = require "jicoo.webhook"

local SECRET_ENV = "JICOO_WEBHOOK_SECRET"

-- The secret from --secret or the environment; or nil, why. A secret with blanks around it is
-- a copy-paste gone wrong (from a dashboard, from an env file), not a secret.
function _M.secret_of(args)
  local secret = args.secret or os_getenv(SECRET_ENV)
  if not secret or secret == "" then
    return nil, "a secret is required: --secret S, or the environment variable " .. SECRET_ENV
  elseif string_find(secret, "^%s") or string_find(secret, "%s$") then
    return nil, "the secret " .. (args.secret and "given with --secret" or "in " .. SECRET_ENV)
      .. " starts or ends with whitespace (a copy-paste?): remove it"
  end
  return secret
end
local secret_of = _M.secret_of

-- The secret and the body of FILE that sign and verify need; or nil, nil, the exit status and
-- a message.
local function secret_and_body(args)
  local secret, secret_err = secret_of(args)
  if not secret then
    return nil, nil, EXIT_USAGE, secret_err
  end
  local body, read_err = read(args.file)
  if not body then
    err_out(read_err)
    return nil, nil, EXIT_FAILURE
  end
  return secret, body
end

function _M.sign(args)
  local secret, body, status, usage = secret_and_body(args)
  if not secret then
    return status, usage
  end
  out(webhook.sign(secret, body, args.time))
  return EXIT_OK
end

function _M.verify(args)
  local secret, body, status, usage = secret_and_body(args)
  if not secret then
    return status, usage
  end
  local ok, msg = webhook.verify(body, args.header, secret,
    { tolerance = args.tolerance, now = args.now })
  if ok then
    out(args.file, ": signature valid")
    return EXIT_OK
  end
  out(args.file, ": signature invalid: ", tostring(msg))
  return EXIT_FAILURE
end

return _M
