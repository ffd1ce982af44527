-- The router's metrics and health in plain Lua: what each answer counts, a handler's runs and
-- their durations, dead letters and the scheduler's passes, the journal's gauges, label values
-- that need escaping, output that Prometheus's own checker (promtool, when installed) accepts;
-- and health going 503 while the scheduler has not passed or the journal cannot be written.
local shared = require "router_shared"
local support = require "support"
local journal = require "jicoo.webhook.journal"
local metrics = require "jicoo.webhook.router.metrics"
local journal_shared = require "journal_shared"

local NOW, fixture, signed = shared.NOW, shared.fixture, shared.signed

-- The samples of an exposition, by series (name and labels as written), and its HELP/TYPE
-- lines, read line by line as the text format defines them.
local function samples(text)
  local values, types = {}, {}
  for line in text:gmatch("[^\n]+") do
    local family, kind = line:match("^# TYPE (%S+) (%S+)$")
    if family then
      types[family] = kind
    elseif not line:match("^#") then
      local series, value = line:match("^(.-) (%S+)$")
      assert(series, "not a sample line: " .. line)
      values[series] = tonumber(value) or (value == "+Inf" and math.huge) or error(line)
    end
  end
  return values, types
end

local function promtool(text)
  if not support.run("command -v promtool"):match("promtool") then
    return nil
  end
  local file = os.tmpname()
  support.write(file, text)
  local out, ok = support.run("promtool check metrics < " .. support.quote(file) .. " 2>&1")
  os.remove(file)
  return ok, out
end

local function booked(uid)
  return (fixture("lenient", "portal_guest_booked.json"):gsub('"uid"%s*:%s*"[^"]*"',
    '"uid":"' .. uid .. '"', 1))
end

describe("router metrics", function()
  it("count every answer, each handler run, dead letters and scheduler passes", function()
    local now = NOW
    local dir = journal_shared.temp_dir()
    finally(function() journal_shared.remove_dir(dir) end)
    local router = shared.new_router({ now = function() return now end, retry_delays = { 10 },
      journal = journal.sqlite({ dir = dir .. "/journal" }) })
    local fail = true
    router:on("guest_booked", function() end)
    router:on("guest_booked", function()
      if fail then error("CRM down") end
    end)
    local body = booked("bk_metrics_1")
    assert.are.equal(500, router:handle(body, signed(body)).status)   -- one handler failed
    assert.are.equal(200, router:handle(body, signed(body)).status)   -- a copy: duplicate
    assert.are.equal(401, router:handle(body, signed(body, NOW, "whsec_other")).status)
    assert.are.equal(400, router:handle("{", signed("{")).status)
    local big = string.rep(" ", router.max_size + 1)
    assert.are.equal(413, router:handle(big, {}).status)
    now = NOW + 20
    assert.are.equal(1, (router:run_due()))   -- the retry fails again: a dead letter
    fail = false
    local other = booked("bk_metrics_2")
    assert.are.equal(200, router:handle(other, signed(other)).status)

    local text = router:metrics()
    local values, types = samples(text)
    local function v(series)
      return values[series]
    end
    assert.are.equal(1, v('jicoo_webhook_deliveries_total{event="guest_booked",result="handler_failed"}'))
    assert.are.equal(1, v('jicoo_webhook_deliveries_total{event="guest_booked",result="duplicate"}'))
    assert.are.equal(1, v('jicoo_webhook_deliveries_total{event="guest_booked",result="handled"}'), text)
    assert.are.equal(1, v('jicoo_webhook_rejected_total{reason="bad_signature"}'))
    assert.are.equal(1, v('jicoo_webhook_rejected_total{reason="invalid_payload"}'))
    assert.are.equal(1, v('jicoo_webhook_rejected_total{reason="too_large"}'))
    assert.are.equal(1, v('jicoo_webhook_retries_total{event="guest_booked",result="handler_failed"}'))
    assert.are.equal(1, v('jicoo_webhook_dead_letters_total{event="guest_booked"}'))
    assert.are.equal(1, v("jicoo_webhook_scheduler_passes_total"))
    -- the first handler succeeded once a delivery (never run again for the first); the second
    -- failed twice on the first delivery, then succeeded on the other
    local first, second
    for series in pairs(values) do
      local label = series:match('^jicoo_webhook_handler_runs_total{handler="(.-)",outcome="failed"}$')
      second = second or label
    end
    for series in pairs(values) do
      local label = series:match('^jicoo_webhook_handler_runs_total{handler="(.-)",outcome="ok"}$')
      if label and label ~= second then first = label end
    end
    assert.truthy(first and second, text)
    assert.are.equal(2, v('jicoo_webhook_handler_runs_total{handler="' .. first .. '",outcome="ok"}'))
    assert.are.equal(1, v('jicoo_webhook_handler_runs_total{handler="' .. second .. '",outcome="ok"}'))
    assert.are.equal(2, v('jicoo_webhook_handler_runs_total{handler="' .. second .. '",outcome="failed"}'))
    -- the histogram: cumulative buckets ending in +Inf = count
    local prefix = 'jicoo_webhook_handler_duration_seconds'
    assert.are.equal(3, v(prefix .. '_count{handler="' .. second .. '"}'))
    assert.are.equal(3, v(prefix .. '_bucket{handler="' .. second .. '",le="+Inf"}'))
    assert.are.equal(3, v(prefix .. '_bucket{handler="' .. second .. '",le="60"}'))
    assert.truthy(v(prefix .. '_sum{handler="' .. second .. '"}') >= 0)
    assert.are.equal("histogram", types[prefix])
    assert.are.equal("counter", types.jicoo_webhook_deliveries_total)
    -- the journal's gauges: the dead letter, none due
    assert.are.equal(1, v("jicoo_webhook_journal_up"))
    assert.are.equal(1, v('jicoo_webhook_journal_deliveries{state="dead"}'))
    assert.are.equal(0, v("jicoo_webhook_journal_oldest_due_age_seconds"))
    local ok, out = promtool(text)
    if ok ~= nil then
      assert(ok, out)
    end
  end)

  it("say how late the longest-waiting due delivery is", function()
    local now = NOW
    local router = shared.new_router({ now = function() return now end, retry_delays = { 10, 10 } })
    router:on("guest_booked", function() error("down") end)
    local body = booked("bk_late")
    router:handle(body, signed(body))
    local record = router.journal:get(router.journal:find({})[1].key)
    now = record.next_at + 42
    local values = samples(router:metrics())
    assert.are.equal(42, values.jicoo_webhook_journal_oldest_due_age_seconds)
    assert.are.equal(1, values['jicoo_webhook_journal_deliveries{state="failed"}'])
  end)

  it("escape label values and count unknown events as other", function()
    local m = metrics.new()
    m:handler_run('a "quoted"\\path\nwith a line', true, 0.003)
    m:delivery("meeting_exploded", "handled")
    local text = m:render()
    assert.truthy(text:find('jicoo_webhook_handler_runs_total{handler="a \\"quoted\\"\\\\path\\nwith a line",outcome="ok"} 1',
      1, true), text)
    assert.truthy(text:find('jicoo_webhook_handler_duration_seconds_bucket{handler="a \\"quoted\\"\\\\path\\nwith a line",le="0.005"} 1',
      1, true), text)
    assert.truthy(text:find('jicoo_webhook_deliveries_total{event="other",result="handled"} 1', 1, true), text)
    local ok, out = promtool(text)
    if ok ~= nil then
      assert(ok, out)
    end
  end)

  it("put an observation in its own bucket and every one above it", function()
    local m = metrics.new()
    for _, seconds in ipairs({ 0.001, 0.02, 0.02, 3, 100 }) do
      m:handler_run("h", true, seconds)
    end
    local values = samples(m:render())
    local function bucket(le)
      return values['jicoo_webhook_handler_duration_seconds_bucket{handler="h",le="' .. le .. '"}']
    end
    assert.are.same({ 1, 1, 3, 3, 3, 4, 4, 5 }, { bucket("0.005"), bucket("0.01"),
      bucket("0.025"), bucket("0.05"), bucket("2.5"), bucket("5"), bucket("60"), bucket("+Inf") })
    assert.are.equal(5, values['jicoo_webhook_handler_duration_seconds_count{handler="h"}'])
    assert.near(103.041, values['jicoo_webhook_handler_duration_seconds_sum{handler="h"}'], 1e-9)
  end)

  it("take a shared dict's interface and refuse anything else", function()
    assert.has_error(function()
      shared.new_router({ metrics = {} })
    end, "webhook.router: option 'metrics' must be a dict with incr, set, get and get_keys (an ngx.shared dict), got table")
    local dict = metrics.memory()
    local router = shared.new_router({ metrics = dict })
    router:handle("{", signed("{"))
    assert.are.equal(1, dict:get('jicoo_webhook_rejected_total{reason="invalid_payload"}'))
  end)
end)

describe("router health", function()
  it("is 503 until a scheduler's pass, then 200, and 503 again when passes stop", function()
    local router = shared.new_router({ verify = false })
    local res = router:health()
    assert.are.equal(503, res.status)
    assert.truthy(res.body:find('"scheduler":"has not passed yet"', 1, true), res.body)
    router:run_due()
    res = router:health()
    assert.are.equal(200, res.status, res.body)
    assert.truthy(res.body:find('"journal":"ok"', 1, true), res.body)
    router.meter.dict:set("jicoo_webhook_scheduler_last_pass_timestamp_seconds", os.time() - 100)
    res = router:health({ scheduler_within = 30 })
    assert.are.equal(503, res.status)
    assert.truthy(res.body:find("last passed 1%d%d s ago %(more than 30 s%)"), res.body)
  end)

  it("is 503 naming the journal when it cannot take a write", function()
    local failing = journal.memory()
    function failing.check()
      return nil, "disk on fire", "io"
    end
    local router = shared.new_router({ verify = false, journal = failing })
    router:run_due()
    local res = router:health()
    assert.are.equal(503, res.status)
    assert.truthy(res.body:find('"journal":"cannot be written: disk on fire"', 1, true), res.body)
  end)

  it("asks the SQLite journal for a write that commits", function()
    local dir = journal_shared.temp_dir()
    local waiting = journal.sqlite({ dir = dir .. "/journal", busy_timeout = 50 })
    assert.is_true(waiting:check())
    -- another connection holding the write lock: the check waits, then says so
    local other = require("jicoo.webhook.sqlite3").open(dir .. "/journal/journal.db")
    assert(other:exec("BEGIN IMMEDIATE"))
    local ok, err, code = waiting:check()
    assert(other:exec("ROLLBACK"))
    other:close()
    journal_shared.remove_dir(dir)
    assert.is_nil(ok)
    assert.are.equal("busy", code, err)
  end)
end)

describe("examples/grafana/jicoo-webhook.json", function()
  local cjson = require "cjson"
  local dashboard = cjson.decode(support.read(support.root .. "/examples/grafana/jicoo-webhook.json"))
  local exprs = {}
  for _, panel in ipairs(dashboard.panels) do
    for _, target in ipairs(panel.targets) do
      exprs[#exprs + 1] = target.expr
    end
  end

  it("asks only for series the receiver exports", function()
    local known = {}
    for _, family in ipairs(metrics.FAMILIES) do
      known[family[1]] = true
      if family[2] == "histogram" then
        for _, suffix in ipairs({ "_bucket", "_sum", "_count" }) do
          known[family[1] .. suffix] = true
        end
      end
    end
    assert.truthy(#exprs >= 6)
    for _, expr in ipairs(exprs) do
      for name in expr:gmatch("jicoo_webhook_[%w_]+") do
        assert.truthy(known[name], name .. " in " .. expr)
      end
    end
  end)

  it("holds PromQL that Prometheus's own checker parses", function()
    if not support.run("command -v promtool"):match("promtool") then
      pending("promtool is not installed (Debian's prometheus package)")
      return
    end
    local lines = { "groups:", "  - name: dashboard", "    rules:" }
    for i, expr in ipairs(exprs) do
      -- Grafana's variables, as Grafana fills them in
      expr = expr:gsub("%$__rate_interval", "1m"):gsub("%$__range", "1h"):gsub("%$instance", ".*")
      lines[#lines + 1] = "      - record: dashboard:panel" .. i
      lines[#lines + 1] = "        expr: '" .. expr:gsub("'", "''") .. "'"
    end
    local file = os.tmpname()
    support.write(file, table.concat(lines, "\n") .. "\n")
    local out, ok = support.run("promtool check rules " .. support.quote(file) .. " 2>&1")
    os.remove(file)
    assert(ok, out)
    assert.truthy(out:find("SUCCESS: " .. #exprs .. " rules found", 1, true), out)
  end)
end)
