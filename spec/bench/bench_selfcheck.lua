-- The self-check of spec/bench/bench.lua: the competitor is a real validator, and every row does
-- what it claims. Both parsers take every payload at its levels; the large payload is what it
-- should be; the Lua validator fails the lenient fixtures at strict and the invalid ones as
-- their expect.tsv says, except where cjson hides the fault (the known gaps); and its date-times
-- agree with webhook.time.
local payloads_module = require "bench_payloads"
local read_file, split_tabs = payloads_module.read_file, payloads_module.split_tabs
local string_format = string.format

local selfcheck = {}

-- Runs the checks, each failure reported through check(cond, msg); returns the known gaps seen,
-- as a list of names each with why.
function selfcheck.run(check, webhook, validator, payloads, large, fixtures)
  for _, p in ipairs(payloads) do
    local levels = p.strict and { "lenient", "strict" } or { "lenient" }
    for _, level in ipairs(levels) do
      local ev, msg = webhook.parse(p.body, { level = level })
      check(ev, p.name .. ": webhook.parse at " .. level .. ": " .. tostring(msg))
      local doc, vmsg = validator.validate(p.body, { level = level })
      check(doc, p.name .. ": Lua validator at " .. level .. ": " .. tostring(vmsg))
    end
  end
  local large_ev = webhook.parse(large, { level = "strict" })
  check(large_ev and #large_ev.object.answers == 40, "large payload: 40 answers expected")
  check(#large > 14 * 1024 and #large < 18 * 1024, "large payload: about 16 KB expected, got " .. #large)
  check(large:find("[\240-\244]") and large:find("[\224-\239]"), "large payload: multi-byte UTF-8 expected")

  -- The lenient fixtures fail strict as expect.tsv says; the invalid ones fail as listed,
  -- except where cjson hides the fault (validator.lua's header).
  local GAPS = {
    ["duplicate_event.json"] = { accepted = true,
      why = "cjson keeps the last of two equal keys" },
    ["lone_surrogate_name.json"] = { code = "syntax",
      why = "cjson refuses the lone surrogate escape itself" },
    ["bad_utf8_name.json"] = { code = "encoding", path = "-",
      why = "UTF-8 is checked on the whole body, before decoding: no path" },
  }
  if not validator.tells_empty_array_from_object then
    GAPS["contact_array.json"] = { accepted = true, why = "cjson decodes [] and {} alike" }
  end
  local expect_files = {
    { dir = "lenient", level = "strict" },
    { dir = "invalid" },
  }
  local gaps_seen = {}
  for _, e in ipairs(expect_files) do
    local tsv = read_file(fixtures .. "/" .. e.dir .. "/expect.tsv")
    check(tsv, e.dir .. "/expect.tsv missing")
    for line in (tsv or ""):gmatch("[^\n]+") do
      local f = split_tabs(line)
      if line:sub(1, 1) ~= "#" and #f >= 4 then
        local name, code, path = f[1], f[3], f[4]:match("^(%S*)")
        if path == '""' then
          path = ""
        end
        local body = read_file(fixtures .. "/" .. e.dir .. "/" .. name)
        local levels = f[2] == "both" and { "lenient", "strict" } or { f[2] }
        for _, level in ipairs(levels) do
          local doc, _, info = validator.validate(body, { level = level })
          local got = doc and "accepted" or (info.code .. " " .. (info.path or "-"))
          local want = code .. " " .. path
          local gap = e.dir == "invalid" and GAPS[name]
          if gap then
            want = gap.accepted and "accepted" or (gap.code .. " " .. (gap.path or "-"))
            if not gaps_seen[name] then
              gaps_seen[name] = true
              gaps_seen[#gaps_seen + 1] = name .. " (" .. gap.why .. ")"
            end
          end
          check(got == want, string_format("Lua validator on %s/%s at %s: got %s, want %s",
            e.dir, name, level, got, want))
        end
      end
    end
  end

  -- The validator's date-times agree with webhook.time on the calendar's corners.
  local DATES = {
    "2024-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2000-02-29T12:00:00+09:00",
    "1900-02-29T12:00:00Z", "2023-04-31T00:00:00Z", "2023-12-31T23:59:60.5z",
    "2023-01-01T24:00:00Z", "2023-01-01t10:00:00-05:30", "2023-01-01T10:00:00+24:00",
    "2023-01-01 10:00:00Z", "2023-01-01T10:00:00", "2023-01-01T10:00:00.Z",
    "2023-13-01T00:00:00Z",
  }
  for _, s in ipairs(DATES) do
    local ours = validator.is_datetime(s)
    local theirs = webhook.time(s) ~= nil
    check(ours == theirs, string_format("date-time %s: Lua validator %s, webhook.time %s", s,
      tostring(ours), tostring(theirs)))
  end
  return gaps_seen
end

return selfcheck
