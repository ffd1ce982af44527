-- What the router specs share (router_spec, router_answers_spec, router_once_spec,
-- router_journal_spec): the secret, clock and signature header they use, a fixture read whole
-- and a body's headers signed, a router on that clock that keeps its log lines, a recorder of
-- handler calls, an answer's body decoded, and the booking delivery most cases send.
local webhook = require "jicoo.webhook"
local cjson = require "cjson"   -- an independent reader of the response bodies
local support = require "support"

local SECRET = "whsec_router_spec"
local NOW = 1700000000
local SIGNATURE = "Jicoo-Webhook-Signature"

local function fixture(folder, name)
  return support.read(support.fixtures .. "/" .. folder .. "/" .. name)
end

local function signed(body, t, secret)
  return { [SIGNATURE] = webhook.sign(secret or SECRET, body, t or NOW) }
end

-- A router on a fixed clock that records its log lines instead of writing them.
local function new_router(opts)
  opts = opts or {}
  local lines = {}
  if opts.verify ~= false then
    opts.secrets = opts.secrets or SECRET
  end
  opts.now = opts.now or NOW
  opts.log = opts.log or function(level, message)
    lines[#lines + 1] = level .. ": " .. message
  end
  return webhook.router(opts), lines
end

-- Records each handler call as "<label>:<event>".
local function recorder(router, names)
  local calls = {}
  for _, name in ipairs(names) do
    router:on(name, function(ev)
      calls[#calls + 1] = name .. ":" .. ev.event
    end)
  end
  return calls
end

local function decode(res)
  return cjson.decode(res.body)
end

local BOOKED = fixture("lenient", "portal_guest_booked.json")

return {
  SECRET = SECRET,
  NOW = NOW,
  SIGNATURE = SIGNATURE,
  fixture = fixture,
  signed = signed,
  new_router = new_router,
  recorder = recorder,
  decode = decode,
  BOOKED = BOOKED,
}
