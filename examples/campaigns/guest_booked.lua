-- Campaign attribution: counts bookings per utm_source and utm_campaign in
-- <output_dir>/campaigns.json, as { [source] = { [campaign] = bookings } }. A visit without UTM
-- parameters counts under "(none)".
local cjson = require "cjson.safe"

local NONE = "(none)"

local function campaigns_path(ctx)
  local dir = ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".")
  return dir .. "/campaigns.json"
end

local function read_counts(path)
  local file = io.open(path, "rb")
  if not file then
    return {}
  end
  local text = file:read("*a")
  file:close()
  return assert(cjson.decode(text), path .. " is not valid JSON")
end

local function write_counts(path, counts)
  local file = assert(io.open(path .. ".tmp", "wb"))
  assert(file:write(assert(cjson.encode(counts))))
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
  local counts = read_counts(path)
  counts[source] = counts[source] or {}
  counts[source][campaign] = (counts[source][campaign] or 0) + 1
  write_counts(path, counts)
  ctx.log("%s / %s: %d booking(s)", source, campaign, counts[source][campaign])
end
