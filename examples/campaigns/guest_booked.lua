-- Campaign attribution: counts bookings per utm_source and utm_campaign in
-- <output_dir>/campaigns.json, as { counts = { [source] = { [campaign] = bookings } },
-- bookings = { [uid] = "source/campaign" } }. A visit without UTM parameters counts under
-- "(none)". A booking is counted once however often its delivery runs (a retry after a crash,
-- a second guest_booked for the same booking): counts are of the bookings listed.
local cjson = require "cjson.safe"

local NONE = "(none)"

local function campaigns_path(ctx)
  local dir = ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".")
  return dir .. "/campaigns.json"
end

local function read_table(path)
  local file = io.open(path, "rb")
  if not file then
    return { counts = {}, bookings = {} }
  end
  local text = file:read("*a")
  file:close()
  return assert(cjson.decode(text), path .. " is not valid JSON")
end

-- A new file renamed over the old one: a crash never leaves half a table.
local function write_table(path, value)
  local file = assert(io.open(path .. ".tmp", "wb"))
  assert(file:write(assert(cjson.encode(value))))
  assert(file:close())
  assert(os.rename(path .. ".tmp", path))
end

return function(ev, ctx)
  local tracking = ev.object.tracking
  local source = tracking.utm_source or NONE
  local campaign = tracking.utm_campaign or NONE
  if type(source) ~= "string" then source = NONE end       -- webhook.null with opts.null
  if type(campaign) ~= "string" then campaign = NONE end

  local path = campaigns_path(ctx)
  local attribution = read_table(path)
  local uid = ev.object.uid
  if attribution.bookings[uid] then
    ctx.log("%s is already counted under %s", uid, attribution.bookings[uid])
    return
  end
  attribution.bookings[uid] = source .. "/" .. campaign
  local counts = attribution.counts
  counts[source] = counts[source] or {}
  counts[source][campaign] = (counts[source][campaign] or 0) + 1
  write_table(path, attribution)
  ctx.log("%s / %s: %d booking(s)", source, campaign, counts[source][campaign])
end
