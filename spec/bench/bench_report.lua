-- The report of spec/bench/bench.lua: one line per runtime and payload, then the ratios that sum
-- it up, parse as deliveries grow, and the targets of docs/performance.md; and the results as TSV
-- lines, written by a run and read back by --report.
local string_format = string.format
local table_concat = table.concat
local unpack_list = rawget(table, "unpack") or rawget(_G, "unpack")
local split_tabs = require("bench_payloads").split_tabs

-- results: list of { runtime, payload, row, us (median per call), ratio (to cjson), floor_ratio
-- (verify: to the HMAC; parse: to the floor), bytes, bytes_ratio, skipped, allocated,
-- allocated_ratio, blocks (allocations per call), kb (the payload's size, scaling rows),
-- per_kb_ratio (scaling: parse's cost per KB against the 16 KB payload's, same rounds) }
local function to_tsv(r)
  local function s(v)
    return v == nil and "" or tostring(v)
  end
  return table_concat({ r.runtime, r.payload, r.row, s(r.us), s(r.ratio), s(r.floor_ratio),
    s(r.bytes), s(r.bytes_ratio), s(r.skipped), s(r.allocated), s(r.allocated_ratio), s(r.blocks),
    s(r.kb), s(r.per_kb_ratio) }, "\t")
end

local function from_tsv(line)
  local f = split_tabs(line)
  local function n(v)
    return v ~= "" and tonumber(v) or nil
  end
  return { runtime = f[1], payload = f[2], row = f[3], us = n(f[4]), ratio = n(f[5]),
    floor_ratio = n(f[6]), bytes = n(f[7]), bytes_ratio = n(f[8]),
    skipped = f[9] ~= "" and f[9] or nil, allocated = n(f[10]), allocated_ratio = n(f[11]),
    blocks = n(f[12]), kb = n(f[13]), per_kb_ratio = n(f[14]) }
end

local function fmt_us(v)
  if v == nil then
    return "-"
  elseif v >= 100 then
    return string_format("%.0f", v)
  elseif v >= 10 then
    return string_format("%.1f", v)
  end
  return string_format("%.2f", v)
end

local function fmt_ratio(v)
  return v == nil and "-" or string_format("%.2f", v)
end

local function print_table(rows, header, align)
  local widths = {}
  for c = 1, #header do
    widths[c] = #header[c]
  end
  for _, row in ipairs(rows) do
    for c = 1, #header do
      if #row[c] > widths[c] then
        widths[c] = #row[c]
      end
    end
  end
  local function line(cells)
    local out = {}
    for c = 1, #header do
      local pad = string.rep(" ", widths[c] - #cells[c])
      out[c] = align[c] == "r" and pad .. cells[c] or cells[c] .. pad
    end
    print("| " .. table_concat(out, " | ") .. " |")
  end
  line(header)
  local rule = {}
  for c = 1, #header do
    rule[c] = align[c] == "r" and string.rep("-", widths[c] + 1) .. ":" or string.rep("-", widths[c] + 2)
  end
  print("|" .. table_concat(rule, "|") .. "|")
  for _, row in ipairs(rows) do
    line(row)
  end
end

local function report(results, quick)
  -- index: runtime -> payload -> row -> result, keeping first-seen order
  local runtimes, by = {}, {}
  local payload_order = {}
  local scaling = {}
  for _, r in ipairs(results) do
    if r.kb then
      scaling[#scaling + 1] = r
    else
      if not by[r.runtime] then
        by[r.runtime] = {}
        runtimes[#runtimes + 1] = r.runtime
      end
      local cell = by[r.runtime][r.payload]
      if not cell then
        cell = {}
        by[r.runtime][r.payload] = cell
        if not payload_order[r.payload] then
          payload_order[#payload_order + 1] = r.payload
          payload_order[r.payload] = true
        end
      end
      cell[r.row] = r
    end
  end

  local function us_ratio(r, with_ratio)
    if r == nil then
      return "-"
    elseif r.skipped then
      return "skipped"
    end
    if with_ratio then
      return fmt_us(r.us) .. " (" .. fmt_ratio(r.ratio) .. ")"
    end
    return fmt_us(r.us)
  end

  local rows = {}
  for _, rt in ipairs(runtimes) do
    for _, payload in ipairs(payload_order) do
      local c = by[rt][payload]
      if c then
        local bytes, allocated = "-", "-"
        if c.parse and c.parse.bytes and c.cjson and c.cjson.bytes then
          bytes = string_format("%d / %d", c.parse.bytes, c.cjson.bytes)
        end
        if c.parse and c.parse.allocated and c.cjson and c.cjson.allocated then
          allocated = string_format("%d / %d", c.parse.allocated, c.cjson.allocated)
        end
        local vfloor, pfloor = "-", "-"
        if c.verify and c.verify.floor_ratio then
          vfloor = fmt_us(c.verify.us) .. " (" .. fmt_ratio(c.verify.floor_ratio) .. ")"
        end
        if c.floor and c.floor.us and c.parse and c.parse.floor_ratio then
          pfloor = fmt_us(c.floor.us) .. " (" .. fmt_ratio(c.parse.floor_ratio) .. ")"
        end
        rows[#rows + 1] = {
          rt, payload, us_ratio(c.cjson), us_ratio(c.parse, true), pfloor, us_ratio(c.lua, true),
          vfloor, us_ratio(c.hmac), us_ratio(c.construct, true), us_ratio(c.router, true), bytes,
          allocated,
        }
      end
    end
  end
  print()
  print("Median µs per call; (x) = time relative to cjson.decode on the same payload, same run"
    .. " (0.50 = twice as fast);")
  print("floor: the same tables built from constants (spec/bench/floor.c, floor_luajit.lua), (x) ="
    .. " parse / floor;")
  print("verify's (x) is relative to core.hmac_sha256 of the same bytes. Heap growth: how much the"
    .. " Lua heap grows per call (collectgarbage), parse / cjson.decode;")
  print("allocated: bytes asked of the Lua allocator per call, every block counted (Lua 5.x only;"
    .. " cjson's own malloc'd buffer is not counted).")
  if quick then
    print("QUICK MODE: a few iterations only; the numbers below mean nothing.")
  end
  print()
  print_table(rows,
    { "runtime", "payload", "cjson.decode", "parse", "floor (x)", "cjson+Lua validator",
      "verify (x HMAC)", "HMAC", "construct", "router:handle", "heap growth", "allocated" },
    { "l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r" })

  -- The ratios that say where the library stands, as ranges over the Jicoo fixtures, then the
  -- generated large payload apart (it is not a delivery Jicoo sends).
  local function is_fixture(payload)
    return not payload:find("^large")
  end
  local summaries = {
    { show = "parse/cjson", what = "parse's time against cjson.decode's",
      value = function(c) return c.parse and c.parse.ratio end },
    { show = "parse/floor", what = "parse's time against building its tables from constants",
      value = function(c) return c.parse and c.parse.floor_ratio end },
    { show = "construct/cjson", what = "verify and parse against cjson.decode alone",
      value = function(c) return c.construct and c.construct.ratio end },
    { show = "validator/parse", what = "how many times faster than cjson and a Lua validator",
      value = function(c)
        return c.lua and c.parse and c.lua.us and c.parse.us and c.lua.ratio / c.parse.ratio
      end },
    { show = "verify/hmac", what = "verify against the HMAC alone",
      value = function(c) return c.verify and c.verify.floor_ratio end },
    { show = "heap growth parse/cjson", what = "the result's size against cjson's",
      value = function(c) return c.parse and c.parse.bytes_ratio end },
    { show = "allocated parse/cjson", what = "bytes asked of the allocator against cjson's",
      value = function(c) return c.parse and c.parse.allocated_ratio end },
  }
  print()
  print("Ratios, [range] over the Jicoo fixtures, then the large payload"
    .. (quick and " (quick run: not meaningful)" or "") .. ":")
  for _, t in ipairs(summaries) do
    local parts = {}
    for _, rt in ipairs(runtimes) do
      local lo, hi, large
      for _, payload in ipairs(payload_order) do
        local c = by[rt][payload]
        local v = c and t.value(c)
        if v and is_fixture(payload) then
          lo = lo and math.min(lo, v) or v
          hi = hi and math.max(hi, v) or v
        elseif v then
          large = v
        end
      end
      if lo then
        parts[#parts + 1] = string_format("%s %s-%s%s", rt, fmt_ratio(lo), fmt_ratio(hi),
          large and string_format(" (large %s)", fmt_ratio(large)) or "")
      end
    end
    if #parts > 0 then
      print(string_format("  %-24s %s: %s", t.show, table_concat(parts, "; "), t.what))
    end
  end

  -- parse per KB as deliveries grow (generated like the large payload, more answers each).
  local per_kb = {}
  if #scaling > 0 then
    local cells = {}
    for _, r in ipairs(scaling) do
      if r.row == "parse" then
        per_kb[r.runtime] = per_kb[r.runtime] or {}
        local list = per_kb[r.runtime]
        list[#list + 1] = r.per_kb_ratio
        cells[#cells + 1] = { r.runtime, string_format("%.0f KB", r.kb), fmt_us(r.us),
          string_format("%.3f", r.us / r.kb), fmt_ratio(r.per_kb_ratio), fmt_ratio(r.ratio) }
      end
    end
    print()
    print("parse as deliveries grow: µs per call, µs per KB, the cost per KB against 16 KB's and"
      .. " the time against cjson.decode's, each in the same rounds:")
    print()
    print_table(cells, { "runtime", "size", "parse µs", "µs per KB", "per KB x 16 KB", "x cjson" },
      { "l", "r", "r", "r", "r", "r" })
  end

  -- The targets (docs/performance.md "Targets"): each figure, and whether it is met.
  print()
  print("Targets" .. (quick and " (quick run: not meaningful)" or "") .. ":")
  local function verdict(what, figure, limit, shown)
    print(string_format("  %-8s %-58s %s (at most %s)", figure <= limit and "met" or "NOT MET",
      what, shown(figure), shown(limit)))
  end
  for _, rt in ipairs(runtimes) do
    local worst, worst_payload
    for _, payload in ipairs(payload_order) do
      local c = by[rt][payload]
      local v = c and is_fixture(payload) and c.parse and c.parse.floor_ratio
      if v and (not worst or v > worst) then
        worst, worst_payload = v, payload
      end
    end
    if worst then
      verdict(string_format("%s parse/floor, worst fixture (%s)", rt, worst_payload), worst,
        rt == "luajit" and 1.6 or 1.3, fmt_ratio)
    end
    local list = per_kb[rt]
    if rt == "luajit" and list and #list > 1 then
      local lo, hi = math.min(unpack_list(list)), math.max(unpack_list(list))
      verdict(rt .. " cost per KB, 4 KB to 1 MB: spread (max / min - 1)", hi / lo - 1, 0.10,
        function(v) return string_format("%.0f%%", v * 100) end)
    end
    local c = by[rt]["valid/guest_cancelled"]
    if rt == "lua5.4" and c and c.parse and c.parse.blocks then
      verdict(rt .. " allocations per parse of guest_cancelled", c.parse.blocks, 14,
        function(v) return string_format("%d", v) end)
      verdict(rt .. " bytes allocated per parse of guest_cancelled", c.parse.allocated, 1208,
        function(v) return string_format("%d", v) end)
    end
  end
end

return {
  to_tsv = to_tsv,
  from_tsv = from_tsv,
  report = report,
}
