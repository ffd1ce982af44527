-- What the journal specs share (journal_contract_spec, journal_sqlite_spec, journal_redis_spec):
-- the clock, lease and key they journal deliveries under, a delivery to journal, and a
-- temporary folder of their own under /tmp, removed by name.
local support = require "support"

local NOW = 1700000000
local LEASE = 60
local KEY = "guest_booked/bk_1/2024-03-01T10:00:05+09:00"

local function new_delivery(key)
  return { key = key or KEY, event = "guest_booked", uid = "bk_1", body = '{"a":1}\n',
    received_at = NOW }
end

local function temp_dir()
  local out = support.run("mktemp -d /tmp/jicoo-journal.XXXXXX")
  return (out:gsub("%s+$", ""))
end

local function remove_dir(dir)
  if dir and dir:match("^/tmp/jicoo%-journal%.") then
    support.run("rm -rf " .. support.quote(dir))
  end
end

return {
  NOW = NOW,
  LEASE = LEASE,
  KEY = KEY,
  new_delivery = new_delivery,
  temp_dir = temp_dir,
  remove_dir = remove_dir,
}
