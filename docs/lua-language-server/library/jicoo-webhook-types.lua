---@meta jicoo.webhook.types

-- The Lua Language Server's annotations of jicoo.webhook's typed tables, for editors
-- (docs/handlers.md, "Editors"). Made by docs/lua-language-server/make.lua from the
-- C core's schema: edit that, not this.
-- luacheck: ignore

---A delivery: what happened (`event`), when, and the booking (`object`).
---@class jicoo.webhook.Event
---@field createdAt string an RFC 3339 date-time
---@field event string known values: guest_booked, guest_rescheduled, host_rescheduled, guest_cancelled, host_cancelled
---@field object jicoo.webhook.Booking
---@field [string] any keys Jicoo sends beyond its documentation (kept by default)
local Event = {}

---Who did it; nil for an unknown event.
---@return "guest"|"host"|nil
function Event:actor() end

---`createdAt` in Unix seconds.
---@return number
function Event:created_at() end

---Whether `event` is one this version knows.
---@return boolean
function Event:is_known() end

---The idempotency key: event/uid/createdAt, `%` and `/` escaped in the first two.
---@return string
function Event:key() end

---What happened; nil for an event this version does not know.
---@return "booked"|"rescheduled"|"cancelled"|nil
function Event:kind() end

---The booking a delivery is about (`ev.object`).
---@class jicoo.webhook.Booking
---@field status string known values: open, cancel
---@field timeZone string never empty
---@field startedAt string an RFC 3339 date-time
---@field endedAt string an RFC 3339 date-time
---@field createdAt string an RFC 3339 date-time
---@field updatedAt string an RFC 3339 date-time
---@field uid string never empty
---@field eventTypeUid string never empty
---@field contact jicoo.webhook.Contact
---@field answers jicoo.webhook.Answer[]
---@field tracking jicoo.webhook.Tracking
---@field cancelReason? string
---@field cancelledAt? string an RFC 3339 date-time
---@field cancelledBy? string
---@field [string] any keys Jicoo sends beyond its documentation (kept by default)
local Booking = {}

---The content the guest gave for `question`, or nil.
---@param question string
---@return string[]?
function Booking:answer(question) end

---`cancelledAt` in Unix seconds, or nil.
---@return number?
function Booking:cancelled_at() end

---Seconds from start to end.
---@return number
function Booking:duration() end

---`endedAt` in Unix seconds.
---@return number
function Booking:ends_at() end

---Whether `status` is "cancel".
---@return boolean
function Booking:is_cancelled() end

---`startedAt` in Unix seconds.
---@return number
function Booking:starts_at() end

---The guest (`booking.contact`).
---@class jicoo.webhook.Contact
---@field email? string
---@field name? string
---@field [string] any keys Jicoo sends beyond its documentation (kept by default)
local Contact = {}

---"Name <email>", or whichever of the two is present.
---@return string?
function Contact:display() end

---One answer of the guest to the booking form (`booking.answers[i]`).
---@class jicoo.webhook.Answer
---@field question string
---@field content string[] a lone string becomes a one-item list (lenient level)
---@field [string] any keys Jicoo sends beyond its documentation (kept by default)
local Answer = {}

---The content as one string, joined by `separator` (default ", ").
---@param separator? string
---@return string
function Answer:text(separator) end

---The UTM parameters of the booking page visit (`booking.tracking`).
---@class jicoo.webhook.Tracking
---@field utm_campaign? string
---@field utm_source? string
---@field utm_medium? string
---@field utm_content? string
---@field utm_term? string
---@field [string] any keys Jicoo sends beyond its documentation (kept by default)
local Tracking = {}

---Whether the visit carried any UTM parameter.
---@return boolean
function Tracking:has_utm() end
