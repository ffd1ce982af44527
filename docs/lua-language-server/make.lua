-- Makes the typed tables' part of the Lua Language Server addon in this folder:
--
--   lua docs/lua-language-server/make.lua > docs/lua-language-server/library/jicoo-webhook-types.lua
--
-- (with the build's core.so on LUA_CPATH and lua/ on LUA_PATH). Every field of every type comes
-- from core.schema, so the annotations cannot drift from what parse gives; every method of
-- types.lua must have a line here. spec/editors_spec.lua makes it again and compares. The rest of
-- the addon (library/jicoo-webhook.lua, config.json) is written by hand.
local ipairs = ipairs
local pairs = pairs
local error = error
local table_concat = table.concat
local table_sort = table.sort

local core = require "jicoo.webhook.core"
local types = require "jicoo.webhook.payload.types"

-- The types in the order a reader meets them.
local TYPES = { "Event", "Booking", "Contact", "Answer", "Tracking" }

local TYPE_DOCS = {
  Event = "A delivery: what happened (`event`), when, and the booking (`object`).",
  Booking = "The booking a delivery is about (`ev.object`).",
  Contact = "The guest (`booking.contact`).",
  Answer = "One answer of the guest to the booking form (`booking.answers[i]`).",
  Tracking = "The UTM parameters of the booking page visit (`booking.tracking`).",
}

-- Each method's signature and one line, by type: every method types.lua has must be here.
local METHODS = {
  Event = {
    kind = { returns = '"booked"|"rescheduled"|"cancelled"|nil',
      doc = "What happened; nil for an event this version does not know." },
    actor = { returns = '"guest"|"host"|nil', doc = "Who did it; nil for an unknown event." },
    is_known = { returns = "boolean", doc = "Whether `event` is one this version knows." },
    key = { returns = "string",
      doc = "The idempotency key: event/uid/createdAt, `%` and `/` escaped in the first two." },
    created_at = { returns = "number", doc = "`createdAt` in Unix seconds." },
  },
  Booking = {
    starts_at = { returns = "number", doc = "`startedAt` in Unix seconds." },
    ends_at = { returns = "number", doc = "`endedAt` in Unix seconds." },
    duration = { returns = "number", doc = "Seconds from start to end." },
    is_cancelled = { returns = "boolean", doc = "Whether `status` is \"cancel\"." },
    cancelled_at = { returns = "number?", doc = "`cancelledAt` in Unix seconds, or nil." },
    answer = { params = "question: string", returns = "string[]?",
      doc = "The content the guest gave for `question`, or nil." },
  },
  Answer = {
    text = { params = "separator?: string", returns = "string",
      doc = "The content as one string, joined by `separator` (default \", \")." },
  },
  Contact = {
    display = { returns = "string?", doc = "\"Name <email>\", or whichever of the two is present." },
  },
  Tracking = {
    has_utm = { returns = "boolean", doc = "Whether the visit carried any UTM parameter." },
  },
}

local function field_type(field)
  if field.kind == "object" then
    return "jicoo.webhook." .. field.type
  elseif field.kind == "array" then
    local items = field.items or {}
    if items.kind == "object" then
      return "jicoo.webhook." .. items.type .. "[]"
    end
    return "string[]"
  end
  return "string"
end

local function field_line(field)
  -- A field parse can leave out: absent at the lenient level, or null (which becomes absent).
  local optional = field.required ~= "always" or field.nullable
  local notes = {}
  if field.format == "date-time" then
    notes[#notes + 1] = "an RFC 3339 date-time"
  elseif field.format == "non-empty" then
    notes[#notes + 1] = "never empty"
  end
  if field.values then
    notes[#notes + 1] = "known values: " .. table_concat(field.values, ", ")
  end
  if field.string_as_list then
    notes[#notes + 1] = "a lone string becomes a one-item list (lenient level)"
  end
  return "---@field " .. field.name .. (optional and "? " or " ") .. field_type(field)
    .. (#notes > 0 and " " .. table_concat(notes, "; ") or "")
end

local function type_block(name)
  local schema = core.schema[name]
  local methods = types.methods[name]
  local lines = { "---" .. TYPE_DOCS[name], "---@class jicoo.webhook." .. name }
  for _, field in ipairs(schema.fields) do
    lines[#lines + 1] = field_line(field)
  end
  lines[#lines + 1] = "---@field [string] any keys Jicoo sends beyond its documentation (kept by"
    .. " default)"
  local local_name = name
  lines[#lines + 1] = "local " .. local_name .. " = {}"
  local names = {}
  for method in pairs(methods) do
    names[#names + 1] = method
  end
  table_sort(names)
  for _, method in ipairs(names) do
    local doc = METHODS[name][method]
    if not doc then
      error("make.lua: no annotation for " .. name .. ":" .. method, 2)
    end
    lines[#lines + 1] = ""
    lines[#lines + 1] = "---" .. doc.doc
    if doc.params then
      lines[#lines + 1] = "---@param " .. doc.params:gsub(": ", " ", 1)
    end
    lines[#lines + 1] = "---@return " .. doc.returns
    local params = doc.params and doc.params:match("^([%w_?]+)"):gsub("%?$", "") or ""
    lines[#lines + 1] = "function " .. local_name .. ":" .. method .. "(" .. params .. ") end"
  end
  return table_concat(lines, "\n")
end

local blocks = {
  "---@meta jicoo.webhook.types",
  "-- The Lua Language Server's annotations of jicoo.webhook's typed tables, for editors"
    .. "\n-- (docs/handlers.md, \"Editors\"). Made by docs/lua-language-server/make.lua from the"
    .. "\n-- C core's schema: edit that, not this.\n-- luacheck: ignore",
}
for _, name in ipairs(TYPES) do
  blocks[#blocks + 1] = type_block(name)
end
io.write(table_concat(blocks, "\n\n"), "\n")
