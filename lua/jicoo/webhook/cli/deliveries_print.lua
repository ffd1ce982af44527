-- jicoo-webhook deliveries: how records read on the terminal and for programs. A line per
-- delivery (text, or one JSON object with --json), the count line every list, retry and drop
-- ends with, a record shown whole, and the journal's counts (stats). Bytes from a delivery are
-- escaped: in text as \xNN (cli_io.printable), in JSON as JSON escapes.
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local string_byte = string.byte
local string_format = string.format
local string_gsub = string.gsub
local string_rep = string.rep
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort
local io_stdout = io.stdout

local cli_io = require "jicoo.webhook.cli.io"
local json = require "jicoo.webhook.payload.json"

local out, iso_time = cli_io.out, cli_io.iso_time
-- A field on one line: bytes from a delivery (a uid holding a line end or a terminal escape)
-- are shown escaped, never obeyed.
local field = cli_io.printable

local _M = {}

-- The states in the order counts are said.
local STATE_ORDER = { "running", "failed", "dead", "done", "corrupt" }

local function first_error(record)
  local e = record.errors and record.errors[1]
  if not e then
    return nil
  end
  return field((string_gsub(tostring(e.handler) .. ": " .. tostring(e.message), "\n", " ")))
end

-- One line of `list`: the state, the key, the attempts, when it runs next, the first error.
function _M.summary_line(record)
  if record.state == "corrupt" then   -- a record the journal cannot read: where, and why
    return "corrupt " .. field(record.file) .. ": " .. field(record.message)
  end
  local parts = { record.state, field(record.key), "attempts=" .. tostring(record.attempts) }
  if record.state == "failed" then
    parts[#parts + 1] = "next=" .. iso_time(record.next_at)
  elseif record.state == "running" then
    parts[#parts + 1] = "lease=" .. iso_time(record.lease_until)
  end
  local problem = first_error(record)
  if problem then
    parts[#parts + 1] = "error=" .. problem
  end
  return table_concat(parts, " ")
end

local function sorted_labels(handlers)
  local labels = {}
  for label in pairs(handlers or {}) do
    labels[#labels + 1] = tostring(label)
  end
  table_sort(labels)
  return labels
end

local function json_list(items, encode_item)
  local parts = {}
  for i, item in ipairs(items) do
    parts[i] = encode_item(item)
  end
  return "[" .. table_concat(parts, ",") .. "]"
end

local function json_error(e)
  return "{\"handler\":" .. json.encode_string(tostring(e.handler)) .. ",\"message\":"
    .. json.encode_string(tostring(e.message)) .. "}"
end

local function c1_escape(byte)
  return string_format("\\u%04x", string_byte(byte))
end

-- JSON text safe on a terminal: valid UTF-8 with every control escaped, C1 and DEL included
-- (JSON lets them stand raw; some terminals obey them).
local function terminal_safe(text)
  text = string_gsub(text, "\127", "\\u007f")
  return (string_gsub(text, "\194([\128-\159])", c1_escape))
end

local RECORD_FIELDS = { "event", "uid", "state", "received_at", "attempts", "budget_from",
  "rearmed_at", "next_at", "lease_until", "finished_at" }

-- One JSON object (a line of --json): the record's fields, times as Unix seconds, `extra`'s
-- fields first (a command's result), the body only when `body` is given.
function _M.json_line(record, extra, body)
  local parts = {}
  local function add(name, text)
    parts[#parts + 1] = json.encode_string(name) .. ":" .. text
  end
  for _, pair in ipairs(extra or {}) do
    add(pair[1], json.encode(pair[2]))
  end
  if record.state == "corrupt" then
    add("state", "\"corrupt\"")
    add("file", json.encode_string(tostring(record.file)))
    add("message", json.encode_string(tostring(record.message)))
  else
    add("key", json.encode_string(tostring(record.key)))
    for _, name in ipairs(RECORD_FIELDS) do
      local value = record[name]
      if name == "budget_from" and value == nil then
        value = 0
      end
      if value ~= nil then
        add(name, json.encode(value))
      end
    end
    add("handlers", json_list(sorted_labels(record.handlers), json.encode_string))
    add("errors", json_list(record.errors or {}, json_error))
    if body ~= nil then
      add("body", json.encode_string(body))
    end
  end
  io_stdout:write(terminal_safe("{" .. table_concat(parts, ",") .. "}"), "\n")
end

-- "12 deliveries: 3 failed, 9 dead" (what: "retried", ...), by the states in `by_state`.
function _M.count_line(n, by_state, what)
  local parts = {}
  for _, state in ipairs(STATE_ORDER) do
    if by_state[state] then
      parts[#parts + 1] = by_state[state] .. " " .. state
    end
  end
  local line = n .. (n == 1 and " delivery" or " deliveries") .. (what and " " .. what or "")
  if #parts > 0 then
    line = line .. ": " .. table_concat(parts, ", ")
  end
  return line
end

local LABEL = "              "   -- the width of show's labels

-- A record shown whole: its fields, its attempts (and the retry that re-armed it), the
-- handlers that succeeded, the last attempt's errors, its body.
function _M.show(record)
  if record.state == "corrupt" then
    out("corrupt ", field(record.file), ": ", field(record.message))
    return
  end
  out("key:          ", field(record.key))
  out("state:        ", field(record.state))
  out("event:        ", field(record.event))
  out("uid:          ", field(record.uid))
  out("received:     ", iso_time(record.received_at))
  out("attempts:     ", tostring(record.attempts))
  if record.rearmed_at then
    local before = record.budget_from or 0
    out("re-armed:     ", iso_time(record.rearmed_at), " by a retry, after ", tostring(before),
      " attempt(s); ", tostring((record.attempts or 0) - before), " since (the retry budget",
      " counts these)")
  end
  if record.state == "failed" then
    out("next attempt: ", iso_time(record.next_at))
  elseif record.state == "running" then
    out("lease until:  ", iso_time(record.lease_until))
  elseif record.finished_at then
    out("finished:     ", iso_time(record.finished_at))
  end
  local done = sorted_labels(record.handlers)
  out("succeeded:    ", #done > 0 and field(table_concat(done, ", ")) or "-")
  for i, e in ipairs(record.errors or {}) do
    out(i == 1 and "errors:       " or LABEL, field(e.handler), ": ",
      (string_gsub(tostring(e.message), "\n", "\n" .. LABEL .. "  ")))
  end
  local body = record.body
  if body then
    out("body:")
    out(string_sub(body, -1) == "\n" and string_sub(body, 1, -2) or body)
  end
end

-- The journal's counts (journal:counts()): by state, then a row per event.
function _M.stats(counts, as_json)
  local total = 0
  for _, n in pairs(counts.states) do
    total = total + n
  end
  if as_json then
    io_stdout:write(terminal_safe(json.encode({ total = total, states = counts.states,
      events = counts.events })), "\n")
    return
  end
  out(_M.count_line(total, counts.states))
  local names, width = {}, #"event"
  for event in pairs(counts.events) do
    names[#names + 1] = event
    local shown = #field(event)
    width = shown > width and shown or width
  end
  if #names == 0 then
    return
  end
  table_sort(names)
  local header = { "event" .. string_rep(" ", width - 5) }
  for i = 1, 4 do
    header[#header + 1] = string_format("%8s", STATE_ORDER[i])
  end
  out(table_concat(header))
  for _, event in ipairs(names) do
    local shown = field(event)
    local row = { shown .. string_rep(" ", width - #shown) }
    for i = 1, 4 do
      row[#row + 1] = string_format("%8d", counts.events[event][STATE_ORDER[i]] or 0)
    end
    out(table_concat(row))
  end
end

return _M
