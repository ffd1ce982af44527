-- Benchmark: webhook.parse, verify, construct and router:handle against cjson.decode, measured
-- side by side in one process, and bytes allocated per call (docs/performance.md).
--
--   sh spec/bench/run.sh [--quick]                   lua5.1, lua5.4 and luajit, one table
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/luajit/?.so;;" \
--     luajit spec/bench/bench.lua [options]          one runtime
--
-- Options: --quick (a few iterations, for CI: every row runs, nothing is timed seriously),
-- --rounds N, --batch-ms MS, --out FILE (results as TSV, for --report), --report FILE... (print
-- the table and the ratios of saved runs). The payloads are the repository's fixtures
-- (spec/fixtures/), found from this script's own path; so are its parts beside it, whatever
-- LUA_PATH says: bench_payloads.lua (the inputs), bench_measure.lua (loops, batches, bytes per
-- call), bench_selfcheck.lua and bench_report.lua.
-- The exit status is non-zero only when something errors (a self-check fails, a call fails);
-- never because of a ratio: timings are reported, not asserted.

local function bench_dir()
  local script = arg and arg[0] or "spec/bench/bench.lua"
  return script:match("^(.*)/[^/]*$") or "."
end

-- Its parts beside it (bench_*.lua), whatever LUA_PATH says.
package.path = bench_dir() .. "/?.lua;" .. package.path

local payloads_module = require "bench_payloads"
local measure = require "bench_measure"
local selfcheck = require "bench_selfcheck"
local bench_report = require "bench_report"

local read_file, list_json = payloads_module.read_file, payloads_module.list_json
local large_payload = payloads_module.large_payload
local median, make_loop, time_batch = measure.median, measure.make_loop, measure.time_batch
local calibrate, bytes_per_call = measure.calibrate, measure.bytes_per_call
local to_tsv, from_tsv, report = bench_report.to_tsv, bench_report.from_tsv, bench_report.report

local string_format = string.format
local table_concat = table.concat

local ROWS = {
  { id = "cjson", label = "cjson.decode" },
  { id = "parse", label = "webhook.parse" },
  { id = "floor", label = "floor: parse's tables from constants" },
  { id = "lua", label = "cjson + Lua validator" },
  { id = "verify", label = "webhook.verify" },
  { id = "hmac", label = "core.hmac_sha256 (floor)" },
  { id = "construct", label = "webhook.construct" },
  { id = "router", label = "router:handle" },
}
local MEMORY_ROWS = { "cjson", "parse", "floor", "lua" }

---------------------------------------------------------------------------------------------
-- Small helpers

local function die(msg)
  io.stderr:write("bench: ", msg, "\n")
  os.exit(2)
end

-- Whether a and b hold the same values, with the same metatables, in tables that are not the same.
local function same_tree(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b
  end
  if a == b or getmetatable(a) ~= getmetatable(b) then
    return false
  end
  for k, v in pairs(a) do
    if not same_tree(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local function parse_args(argv)
  local o = { rounds = 21, batch_ms = 4, memory_calls = 200, report = {} }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--quick" then
      o.quick = true
    elseif a == "--rounds" or a == "--batch-ms" or a == "--out" then
      i = i + 1
      local v = argv[i] or die(a .. " needs a value")
      if a == "--rounds" then
        o.rounds = tonumber(v) or die("--rounds: number expected")
      elseif a == "--batch-ms" then
        o.batch_ms = tonumber(v) or die("--batch-ms: number expected")
      else
        o.out = v
      end
    elseif a == "--report" then
      for j = i + 1, #argv do
        o.report[#o.report + 1] = argv[j]
      end
      break
    elseif a == "--help" or a == "-h" then
      print("usage: bench.lua [--quick] [--rounds N] [--batch-ms MS] [--out FILE]")
      print("       bench.lua --report FILE...")
      os.exit(0)
    else
      die("unknown argument '" .. a .. "' (try --help)")
    end
    i = i + 1
  end
  if o.quick then
    o.rounds, o.batch_ms, o.memory_calls = 3, 0, 5
  end
  return o
end

---------------------------------------------------------------------------------------------
-- The run

local function runtime_name()
  if rawget(_G, "jit") then
    return "luajit"
  end
  return "lua" .. _VERSION:match("%d+%.%d+")
end

local function run(opts)
  local runtime = runtime_name()
  local cjson = require "cjson"
  local webhook = require "jicoo.webhook"
  local core = require "jicoo.webhook.core"
  local validator = dofile(bench_dir() .. "/validator.lua")
  local floor = rawget(_G, "jit") and dofile(bench_dir() .. "/floor_luajit.lua") or require "floor"
  local fixtures = bench_dir() .. "/../fixtures"
  local errors = {}
  local function problem(msg)
    errors[#errors + 1] = msg
    io.stderr:write("bench: ", runtime, ": ", msg, "\n")
  end

  -- Payloads: every valid and lenient fixture, read in place, and the large generated one.
  local payloads = {}
  for _, dir in ipairs({ "valid", "lenient" }) do
    for _, name in ipairs(list_json(fixtures .. "/" .. dir)) do
      local body = assert(read_file(fixtures .. "/" .. dir .. "/" .. name))
      payloads[#payloads + 1] = { name = dir .. "/" .. name:gsub("%.json$", ""), body = body,
        strict = dir == "valid" }
    end
  end
  if #payloads == 0 then
    die("no fixtures under " .. fixtures)
  end
  local large = large_payload()
  payloads[#payloads + 1] = { name = string_format("large (%.1f KB)", #large / 1024), body = large,
    strict = true, large = true }

  -----------------------------------------------------------------------------------------
  -- Self-check: the competitor is a real validator, and every row does what it claims.

  local function check(cond, msg)
    if not cond then
      problem("self-check: " .. msg)
    end
    return cond
  end

  local gaps_seen = selfcheck.run(check, webhook, validator, payloads, large, fixtures)

  -----------------------------------------------------------------------------------------
  -- Rows

  local SECRET = "whsec_bench_0123456789abcdef"
  local handled = 0
  local router, router_skip
  do
    local store = require "jicoo.webhook.store"
    -- The router dedupes on ev:key(), and every call here sends the same bytes. Rather than
    -- mutate the payload, the store's clock moves 1201 s per call and claims live 600 s (the
    -- least the router takes with the default tolerance), so each claim has expired by the next
    -- call: the real memory store does its real work (expire the old claim, take the new one)
    -- and the handler runs on every call.
    local tick = 0
    local ok, r = pcall(webhook.router, {
      secrets = SECRET,
      ttl = 600,
      store = store.memory({ clock = function() tick = tick + 1201 return tick end }),
    })
    if ok then
      ok, r = pcall(function()
        r:on("*", function()
          handled = handled + 1
        end)
        return r
      end)
    end
    if ok then
      router = r
    else
      router_skip = "webhook.router unavailable: " .. tostring(r)
      io.stderr:write("bench: ", runtime, ": skipping router:handle: ", router_skip, "\n")
    end
  end

  local results = {}
  for pi, p in ipairs(payloads) do
    io.stderr:write(string_format("bench: %s: %s (%d/%d)\n", runtime, p.name, pi, #payloads))
    local body = p.body
    -- Signed now, with the default tolerance, as a receiver sees it; each payload's rounds
    -- take a few seconds, well inside the 300 s window.
    local t = os.time()
    local header = webhook.sign(SECRET, body, t)
    local signed_bytes = t .. "." .. body
    local headers = { ["Jicoo-Webhook-Signature"] = header, ["Content-Type"] = "application/json" }

    check(webhook.verify(body, header, SECRET) == true, p.name .. ": verify")
    check(webhook.construct(body, header, SECRET), p.name .. ": construct")
    check(core.hmac_sha256(SECRET, signed_bytes):len() == 32, p.name .. ": hmac_sha256")
    local parsed = webhook.parse(body)
    local build_floor = parsed and floor.compile(parsed)
    check(build_floor and same_tree(build_floor(), parsed), p.name .. ": the floor builds parse's tables")
    if router then
      local before = handled
      local res = router:handle(body, headers)
      check(res.status == 200 and handled == before + 1, p.name .. ": router:handle status "
        .. tostring(res.status) .. ", handler ran " .. (handled - before) .. " time(s)")
    end

    local tag = runtime .. ":" .. p.name .. ":"
    local loops = {
      cjson = make_loop("f(a)", tag .. "cjson", cjson.decode, body),
      parse = make_loop("f(a)", tag .. "parse", webhook.parse, body),
      floor = make_loop("f()", tag .. "floor", build_floor),
      lua = make_loop("f(a)", tag .. "lua", validator.validate, body),
      verify = make_loop("f(a, b, c)", tag .. "verify", webhook.verify, body, header, SECRET),
      hmac = make_loop("f(a, b)", tag .. "hmac", core.hmac_sha256, SECRET, signed_bytes),
      construct = make_loop("f(a, b, c)", tag .. "construct", webhook.construct, body, header,
        SECRET),
      router = router and make_loop("f:handle(a, b).status == 200", tag .. "router", router,
        body, headers),
    }

    -- Calibrate (and warm up) every row, then interleaved rounds: in each round every row runs
    -- one batch, starting one row further each round, so drifting machine load hits all rows
    -- alike and each ratio compares batches run moments apart.
    local active, n = {}, {}
    for _, row in ipairs(ROWS) do
      if loops[row.id] then
        active[#active + 1] = row.id
        n[row.id] = opts.quick and 2 or calibrate(loops[row.id], opts.batch_ms / 1000)
      end
    end
    local per_call, ratios = {}, {}
    for _, id in ipairs(active) do
      per_call[id], ratios[id] = {}, {}
    end
    local floor_ratios, parse_floor = {}, {}
    for round = 1, opts.rounds do
      local this = {}
      for k = 0, #active - 1 do
        local id = active[(round + k - 1) % #active + 1]
        local handled_before = handled
        local elapsed, failed = time_batch(loops[id], n[id])
        if id == "router" and handled - handled_before ~= n[id] then
          problem(string_format("%s: router: the handler ran %d times in %d calls", p.name,
            handled - handled_before, n[id]))
        end
        if failed > 0 then
          problem(string_format("%s: %s: %d of %d calls failed", p.name, id, failed, n[id]))
        end
        this[id] = elapsed / n[id]
        per_call[id][round] = this[id] * 1e6
      end
      for _, id in ipairs(active) do
        ratios[id][round] = this[id] / this.cjson
      end
      floor_ratios[round] = this.verify / this.hmac
      parse_floor[round] = this.parse / this.floor
    end

    local bytes, allocated, blocks = {}, {}, {}
    for _, id in ipairs(MEMORY_ROWS) do
      bytes[id], allocated[id], blocks[id] = bytes_per_call(loops[id], opts.memory_calls)
    end

    for _, row in ipairs(ROWS) do
      local id = row.id
      local r = { runtime = runtime, payload = p.name, row = id }
      if per_call[id] then
        r.us = median(per_call[id])
        r.ratio = median(ratios[id])
      elseif id == "router" then
        r.skipped = router_skip
      end
      if id == "verify" then
        r.floor_ratio = median(floor_ratios)
      elseif id == "parse" then
        r.floor_ratio = median(parse_floor)
      end
      if bytes[id] then
        r.bytes = math.floor(bytes[id] + 0.5)
        r.bytes_ratio = bytes[id] / bytes.cjson
      end
      if allocated[id] then
        r.allocated = math.floor(allocated[id] + 0.5)
        r.allocated_ratio = allocated[id] / allocated.cjson
        r.blocks = blocks[id]
      end
      results[#results + 1] = r
    end
  end

  -- parse as deliveries grow, from 4 KB to 1 MB (just under max_size). Every round times a
  -- batch of parse and one of cjson.decode at every size, so that the sizes are compared moments
  -- apart: each size's cost per KB is also taken relative to the 16 KB one's in the same round.
  local per_answer = (#large_payload(80) - #large) / 40
  local fixed = #large - 40 * per_answer
  local sizes = {}
  for _, kb in ipairs({ 4, 16, 64, 256, 1000 }) do
    local big = large_payload(math.floor((kb * 1024 - fixed) / per_answer + 0.5))
    check(webhook.parse(big), string_format("%.0f KB payload: webhook.parse", #big / 1024))
    local tag = runtime .. ":scale" .. kb .. ":"
    local size = { kb = #big / 1024, reference = kb == 16, loops = {
      parse = make_loop("f(a)", tag .. "parse", webhook.parse, big),
      cjson = make_loop("f(a)", tag .. "cjson", cjson.decode, big),
    }, n = {}, times = { parse = {}, cjson = {} }, ratios = {}, relative = {} }
    for id, loop in pairs(size.loops) do
      size.n[id] = opts.quick and 1 or calibrate(loop, opts.batch_ms / 1000)
    end
    sizes[#sizes + 1] = size
  end
  io.stderr:write(string_format("bench: %s: parse from 4 KB to 1 MB\n", runtime))
  for round = 1, opts.rounds do
    local reference
    for k = 0, #sizes - 1 do
      local size = sizes[(round + k - 1) % #sizes + 1]
      local first, second = "parse", "cjson"
      if round % 2 == 0 then
        first, second = second, first
      end
      size.times[first][round] = time_batch(size.loops[first], size.n[first]) / size.n[first] * 1e6
      size.times[second][round] = time_batch(size.loops[second], size.n[second]) / size.n[second] * 1e6
      size.ratios[round] = size.times.parse[round] / size.times.cjson[round]
      if size.reference then
        reference = size.times.parse[round] / size.kb
      end
    end
    for _, size in ipairs(sizes) do
      size.relative[round] = size.times.parse[round] / size.kb / reference
    end
  end
  for _, size in ipairs(sizes) do
    for _, id in ipairs({ "parse", "cjson" }) do
      results[#results + 1] = { runtime = runtime, payload = "scale", row = id,
        us = median(size.times[id]), ratio = id == "parse" and median(size.ratios) or 1,
        kb = size.kb, per_kb_ratio = id == "parse" and median(size.relative) or nil }
    end
  end

  -- The run and its results: saved for --report, printed for this runtime alone.
  if opts.out then
    local f = assert(io.open(opts.out, "wb"))
    f:write("#", opts.quick and "quick" or "full", "\n")
    for _, r in ipairs(results) do
      f:write(to_tsv(r), "\n")
    end
    f:close()
  else
    report(results, opts.quick)
  end
  if #gaps_seen > 0 and not opts.out then
    print()
    print("Known gaps of cjson + Lua validator (checked): " .. table_concat(gaps_seen, "; "))
  end
  if #errors > 0 then
    io.stderr:write(string_format("bench: %s: %d error(s)\n", runtime, #errors))
    os.exit(1)
  end
end

local opts = parse_args(arg or {})
if #opts.report > 0 then
  local results, quick = {}, false
  for _, path in ipairs(opts.report) do
    local text = read_file(path) or die("cannot read " .. path)
    for line in text:gmatch("[^\n]+") do
      if line == "#quick" then
        quick = true
      elseif line:sub(1, 1) ~= "#" then
        results[#results + 1] = from_tsv(line)
      end
    end
  end
  report(results, quick)
else
  run(opts)
end
