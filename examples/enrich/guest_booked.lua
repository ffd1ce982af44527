-- A new booking, enriched for a CRM: the booking and its contacts fetched from Jicoo's API
-- (the meeting URL, the guest's company and phone, which the webhook does not carry) and kept
-- in <output_dir>/crm.json as { [booking uid] = record }. Writing a record replaces the one of
-- the same booking, so a retry or a repeated delivery leaves one record, up to date.
-- Settings: jicoo_api_key (else $JICOO_API_KEY), jicoo_api_url (else $JICOO_API_URL, else
-- Jicoo's own).
local api = require "jicoo.api"
local cjson = require "cjson.safe"

local function crm_path(ctx)
  return ctx:setting("output_dir", "JICOO_OUTPUT_DIR", ".") .. "/crm.json"
end

local function read_records(path)
  local file = io.open(path, "rb")
  if not file then
    return {}
  end
  local text = file:read("*a")
  file:close()
  return assert(cjson.decode(text), path .. " is not valid JSON")
end

local function write_records(path, records)
  local file = assert(io.open(path .. ".tmp", "wb"))
  assert(file:write(assert(cjson.encode(records))))
  assert(file:close())
  assert(os.rename(path .. ".tmp", path))
end

return function(ev, ctx)
  local jicoo = api.client({
    http = ctx.http,
    key = ctx:setting("jicoo_api_key", "JICOO_API_KEY"),
    base_url = ctx:setting("jicoo_api_url", "JICOO_API_URL"),
    log = ctx.log.warn,
  })
  local uid = ev.object.uid
  -- Any failure raises: the router retries this handler later, alone.
  local booking = assert(jicoo:booking(uid))
  local contacts, msg, code = jicoo:booking_contacts(uid)
  if not contacts then
    if code ~= "not_found" then   -- Jicoo answers 404 when a booking has no contacts
      error(msg, 0)
    end
    contacts = {}
  end
  local guest = contacts[1] or {}
  local record = {
    key = ctx.key,
    uid = uid,
    title = booking.name,
    status = booking.status,
    starts_at = booking.startedAt,
    ends_at = booking.endedAt,
    time_zone = booking.timeZone,
    location = booking.locationId,
    meeting_url = booking.url,
    guest_name = guest.name or ev.object.contact.name,
    guest_email = guest.email or ev.object.contact.email,
    company = guest.company,
    phone = guest.phoneNumber,
    cc = guest.ccEmails,
    source = ev.object.tracking.utm_source,
  }
  local path = crm_path(ctx)
  local records = read_records(path)
  records[uid] = record
  write_records(path, records)
  ctx.log("crm: %s, %s (%s)", record.guest_name, record.company or "no company",
    record.meeting_url or "no meeting URL")
end
