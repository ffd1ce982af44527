-- How the Redis journal keeps a record: a hash of text fields (numbers as Redis writes them,
-- handlers and errors as JSON, `indexed` for the scripts' own use), and how a failure of the
-- server reads in its messages. journal/redis.lua and journal/redis_reads.lua share it.
local type = type
local error = error
local pairs = pairs
local ipairs = ipairs
local tonumber = tonumber
local tostring = tostring
local next = next

local json = require "jicoo.webhook.payload.json"
local journal = require "jicoo.webhook.journal"

local _M = {}

local NUMBER_FIELDS = {
  received_at = true, attempts = true, next_at = true, lease_until = true, version = true,
  finished_at = true, expires_at = true, budget_from = true, rearmed_at = true,
}
local JSON_FIELDS = { handlers = true, errors = true }
local INTERNAL_FIELDS = { indexed = true }
local STATES = {}
for _, state in ipairs(journal.STATES) do
  STATES[state] = true
end
_M.STATES, _M.NUMBER_FIELDS = STATES, NUMBER_FIELDS

-- The hash that holds the record under key.
function _M.hash_key(self, key)
  return self.prefix .. "d:" .. key
end

-- nil, the message and the code of a failed call (an error reply named after the server it
-- came from).
function _M.failure(self, err, code)
  if code == "reply" then
    return nil, "redis " .. self.address .. ": " .. tostring(err), code
  end
  return nil, tostring(err), code
end

function _M.unexpected(self, what)
  return nil, "redis " .. self.address .. ": unexpected reply to " .. what, "protocol"
end

-- A field's value as the hash holds it.
function _M.field_text(name, value)
  local kind = type(value)
  if kind == "table" then
    if name == "errors" and next(value) == nil then
      return "[]"
    end
    return json.encode(value)
  elseif kind == "string" or kind == "number" then
    return value
  end
  error("journal.redis: field " .. tostring(name) .. " cannot be a " .. kind, 4)
end

-- Appends the fields of a record (or of changes) to args as field, value, ..., but those named
-- in `except`.
function _M.add_fields(args, fields, except)
  for name, value in pairs(fields) do
    if not (except and except[name]) then
      args[#args + 1] = name
      args[#args + 1] = _M.field_text(name, value)
    end
  end
end

-- The record an HGETALL reply (or find's list of fields and values) holds: the record, false
-- when it is empty, or nil, err.
function _M.record_of(flat, name)
  if type(flat) ~= "table" then
    return nil, "corrupt record " .. name .. ": not a hash"
  elseif #flat == 0 then
    return false
  end
  local record = {}
  for i = 1, #flat - 1, 2 do
    local field, value = flat[i], flat[i + 1]
    if NUMBER_FIELDS[field] then
      local number = tonumber(value)
      if not number then
        return nil, "corrupt record " .. name .. ": " .. field .. " is not a number"
      end
      record[field] = number
    elseif JSON_FIELDS[field] then
      local decoded, msg = journal.decode_json(value)
      if type(decoded) ~= "table" then
        return nil, "corrupt record " .. name .. ": " .. field .. ": " .. tostring(msg)
      end
      record[field] = decoded
    elseif not INTERNAL_FIELDS[field] then
      record[field] = value
    end
  end
  if type(record.key) ~= "string" or not STATES[record.state] then
    return nil, "corrupt record " .. name .. ": not a journal record"
  end
  return record
end

return _M
