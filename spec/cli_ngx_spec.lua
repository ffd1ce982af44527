-- The `ngx` stand-in of jicoo-webhook run (cli/ngx.lua, cli/ngx_shdict.lua), on a clock the
-- spec moves: ngx.log and its levels, the time functions and ngx.sleep, the shared dicts (TTLs,
-- incr with init and init_ttl, add/replace, flags, stale items, flushes, keys), timers in the
-- order they are due and premature at the end, ngx.ctx per request, ngx.var, base64, and the
-- message for a name it does not offer.
local standin = require "jicoo.webhook.cli.ngx"

-- A stand-in on a clock at t (seconds), and the lines it logged.
local function new_standin(t)
  local clock = { t = t or 1000 }
  local lines = {}
  local stand = standin.new({
    now = function() return clock.t end,
    log = function(level, message) lines[#lines + 1] = level .. " " .. message end,
    prefix = "/srv/jicoo/",
  })
  return stand, clock, lines
end

describe("the ngx stand-in", function()
  it("logs at nginx's levels, naming the caller's line", function()
    local stand, _, lines = new_standin()
    local ngx = stand.ngx
    local cases = {
      { ngx.STDERR, 0, "stderr" }, { ngx.EMERG, 1, "emerg" }, { ngx.ALERT, 2, "alert" },
      { ngx.CRIT, 3, "crit" }, { ngx.ERR, 4, "error" }, { ngx.WARN, 5, "warn" },
      { ngx.NOTICE, 6, "notice" }, { ngx.INFO, 7, "info" }, { ngx.DEBUG, 8, "debug" },
    }
    for i, case in ipairs(cases) do
      assert.are.equal(case[2], case[1])
      ngx.log(case[1], "n=", 1, " ", nil, " ", true)
      assert.truthy(lines[i]:match("^" .. case[3] .. " .*cli_ngx_spec%.lua:%d+: n=1 nil true$"), lines[i])
    end
    assert.has_error(function() ngx.log("info", "x") end)
    assert.has_error(function() ngx.log(ngx.INFO, {}) end,
      "bad argument #2 to 'ngx.log' (expected table to have __tostring metamethod)")
    ngx.log(ngx.INFO, setmetatable({}, { __tostring = function() return "shown" end }))
    assert.truthy(lines[#lines]:find(": shown$"))
  end)

  it("tells the stand-in's time; ngx.sleep moves it on without waiting", function()
    local stand, clock = new_standin(86400 + 3600 + 0.25)
    local ngx = stand.ngx
    assert.are.equal(90000.25, ngx.now())
    assert.are.equal(90000, ngx.time())
    assert.are.equal("1970-01-02 01:00:00", ngx.utctime())
    assert.are.equal(os.date("%Y-%m-%d", 90000), ngx.today())
    assert.are.equal(os.date("%Y-%m-%d %H:%M:%S", 90000), ngx.localtime())
    ngx.update_time()
    local started = os.time()
    ngx.sleep(3600)
    assert.truthy(os.time() - started < 60)
    assert.are.equal(93600, ngx.time())
    clock.t = clock.t + 1
    assert.are.equal(93601.25, ngx.now())
    assert.has_error(function() ngx.sleep(-1) end)
  end)

  describe("ngx.shared", function()
    it("gives a dict for any name, the same one each time", function()
      local ngx = new_standin().ngx
      assert.are.equal(ngx.shared.jicoo_stats, ngx.shared.jicoo_stats)
      assert.are_not.equal(ngx.shared.a, ngx.shared.b)
      ngx.shared.a:set("k", 1)
      assert.is_nil(ngx.shared.b:get("k"))
      assert.has_error(function() ngx.shared.a = {} end)
    end)

    it("set, get, flags, TTLs on the stand-in's clock, get_stale", function()
      local stand, clock = new_standin()
      local dict = stand.ngx.shared.d
      assert.are.same({ true, nil, false }, { dict:set("k", "v", 10) })
      assert.are.same({ "v" }, { dict:get("k") })
      assert.are.equal(10, dict:ttl("k"))
      clock.t = clock.t + 9.5
      assert.are.equal("v", dict:get("k"))
      assert.are.equal(0.5, dict:ttl("k"))
      clock.t = clock.t + 0.5
      assert.is_nil(dict:get("k"))
      assert.are.same({ nil, "not found" }, { dict:ttl("k") })
      assert.are.same({ "v", nil, true }, { dict:get_stale("k") })
      stand.ngx.sleep(1)
      assert.are.same({ true, nil, false }, { dict:set("f", 1.5, 0, 7) })
      assert.are.same({ 1.5, 7 }, { dict:get("f") })
      assert.are.same({ 1.5, 7, false }, { dict:get_stale("f") })
      assert.are.equal(0, dict:ttl("f"))
      assert.are.same({ true, nil, false }, { dict:set("b", false) })
      assert.are.same({ false }, { dict:get("b") })
      assert.are.same({ false, "bad value type", false }, { dict:set("t", {}) })
      assert.are.same({ nil, "nil key" }, { dict:get(nil) })
      assert.are.same({ nil, "empty key" }, { dict:get("") })
      dict:set(42, "number key")
      assert.are.equal("number key", dict:get("42"))
      assert.has_error(function() dict.get("k") end, "ngx.shared.DICT.get: call it as a method, dict:get(...)")
    end)

    it("add and replace, safe_set, safe_add, delete, expire", function()
      local stand, clock = new_standin()
      local dict = stand.ngx.shared.d
      assert.are.same({ true, nil, false }, { dict:add("k", 1, 5) })
      assert.are.same({ false, "exists", false }, { dict:add("k", 2) })
      assert.are.same({ false, "exists" }, { dict:safe_add("k", 2) })
      assert.are.same({ false, "not found", false }, { dict:replace("other", 2) })
      assert.are.same({ true, nil, false }, { dict:replace("k", 3) })
      assert.are.equal(0, dict:ttl("k"))   -- replace without exptime: never expires
      assert.are.same({ true, nil }, { dict:safe_set("s", "x") })
      assert.are.same({ true }, { dict:expire("s", 2) })
      clock.t = clock.t + 2
      assert.is_nil(dict:get("s"))
      assert.are.same({ nil, "not found" }, { dict:expire("s", 2) })
      assert.are.same({ true, nil, false }, { dict:add("s", "again") })   -- expired: added again
      dict:delete("s")
      assert.is_nil(dict:get("s"))
      assert.is_nil(dict:get_stale("s"))
    end)

    it("incr: an existing number, not found without init, init and init_ttl, not a number", function()
      local stand, clock = new_standin()
      local dict = stand.ngx.shared.d
      assert.are.same({ nil, "not found" }, { dict:incr("n", 1) })
      assert.are.same({ 6, nil, false }, { dict:incr("n", 1, 5, 10) })
      assert.are.same({ 8 }, { dict:incr("n", 2) })
      assert.are.same({ 7, nil, false }, { dict:incr("n", -1, 100) })   -- init only when missing
      assert.are.equal(10, dict:ttl("n"))
      clock.t = clock.t + 10
      assert.is_nil(dict:get("n"))
      assert.are.same({ 1, nil, false }, { dict:incr("n", 1, 0) })
      assert.are.equal(0, dict:ttl("n"))
      dict:set("s", "text")
      assert.are.same({ nil, "not a number" }, { dict:incr("s", 1) })
      assert.has_error(function() dict:incr("n", "1") end)
      assert.has_error(function() dict:incr("n", 1, nil, 5) end)
    end)

    it("flush_all, flush_expired, get_keys", function()
      local stand, clock = new_standin()
      local dict = stand.ngx.shared.d
      for i = 1, 5 do
        dict:set("k" .. i, i, i <= 2 and 1 or 0)
      end
      assert.are.same({ "k1", "k2", "k3", "k4", "k5" }, dict:get_keys())
      assert.are.same({ "k1", "k2" }, dict:get_keys(2))
      clock.t = clock.t + 1
      assert.are.same({ "k3", "k4", "k5" }, dict:get_keys(0))
      assert.are.equal(1, dict:flush_expired(1))
      assert.are.equal(1, dict:flush_expired())
      assert.are.equal(0, dict:flush_expired())
      dict:flush_all()
      assert.are.same({}, dict:get_keys())
      assert.is_nil(dict:get("k3"))
      assert.are.same({ 3, nil, true }, { dict:get_stale("k3") })
      assert.are.equal(3, dict:flush_expired())
      assert.is_nil(dict:get_stale("k3"))
    end)

    it("names the methods it offers when another is asked for", function()
      local dict = new_standin().ngx.shared.d
      for _, name in ipairs({ "lpush", "capacity", "free_space" }) do
        local ok, err = pcall(function() return dict[name] end)
        assert.is_false(ok)
        assert.truthy(err:find("cli_ngx_spec.lua:%d+: ngx.shared.DICT:" .. name
          .. " is not available in jicoo%-webhook run %(its shared dicts offer add, delete, .*, ttl%)$"), err)
      end
    end)
  end)

  describe("ngx.timer", function()
    it("runs at timers in the order they are due, the clock moved on to each, premature false", function()
      local stand, _, lines = new_standin(1000)
      local ngx = stand.ngx
      local seen = {}
      local function note(premature, name)
        seen[#seen + 1] = name .. "@" .. ngx.time() .. (premature and " premature" or "")
      end
      assert.is_true(ngx.timer.at(30, note, "thirty"))
      assert.is_true(ngx.timer.at(0, note, "zero"))
      assert.is_true(ngx.timer.at(5, function(premature)
        note(premature, "five")
        ngx.timer.at(1, note, "six, queued by five")
        error("five broke")
      end))
      assert.is_true(ngx.timer.at(0, note, "zero again"))
      assert.are.equal(4, ngx.timer.pending_count())
      assert.are.same({}, seen)   -- nothing runs before run_timers
      local reports = {}
      local ran, failed = stand:run_timers(function(timer) reports[#reports + 1] = timer end)
      assert.are.same({ "zero@1000", "zero again@1000", "five@1005", "six, queued by five@1006",
        "thirty@1030" }, seen)
      assert.are.equal(5, ran)
      assert.are.equal(1, failed)
      assert.is_false(reports[3].ok)
      assert.truthy(reports[3].error:find("five broke", 1, true))
      assert.are.equal(5, reports[3].at)
      assert.truthy(reports[1].label:match("cli_ngx_spec%.lua:%d+$"), reports[1].label)
      assert.are.same({ nil, "process exiting" }, { ngx.timer.at(0, note, "too late") })
      assert.are.equal(0, ngx.timer.pending_count())
      assert.are.same({}, lines)
    end)

    it("runs an every timer EVERY_RUNS times, then once premature, as nginx at exit", function()
      local stand = new_standin(0)
      local ngx = stand.ngx
      local seen = {}
      ngx.timer.every(10, function(premature, tag)
        seen[#seen + 1] = tag .. "@" .. ngx.time() .. (premature and " premature" or "")
        assert(ngx.timer.running_count() == 1)
      end, "tick")
      ngx.timer.at(25, function() seen[#seen + 1] = "at@" .. ngx.time() end)
      stand:run_timers()
      assert.are.equal(3, standin.EVERY_RUNS)
      assert.are.same({ "tick@10", "tick@20", "at@25", "tick@30", "tick@30 premature" }, seen)
      assert.has_error(function() ngx.timer.every(0, function() end) end)
      assert.has_error(function() ngx.timer.at(-1, function() end) end)
      assert.has_error(function() ngx.timer.at(1, "not a function") end)
    end)

    it("stops a timer that queues itself forever after MAX_TIMER_RUNS, premature", function()
      local stand = new_standin(0)
      local ngx = stand.ngx
      local runs, premature_runs, refused = 0, 0, nil
      local function again(premature)
        if premature then
          premature_runs = premature_runs + 1
          local _, err = ngx.timer.at(1, again)
          refused = err
          return
        end
        runs = runs + 1
        ngx.timer.at(1, again)
      end
      ngx.timer.at(0, again)
      stand:run_timers()
      assert.are.equal(standin.MAX_TIMER_RUNS, runs)
      assert.are.equal(1, premature_runs)
      assert.are.equal("process exiting", refused)
    end)
  end)

  it("ngx.ctx is fresh per request; ngx.var is empty and read-only; ngx.status is ignored", function()
    local stand = new_standin()
    local ngx = stand.ngx
    ngx.ctx.seen = true
    stand:new_request()
    assert.is_nil(ngx.ctx.seen)
    assert.is_nil(ngx.var.remote_addr)
    assert.has_error(function() ngx.var.x = 1 end,
      "ngx.var.x cannot be set in jicoo-webhook run: there is no request, ngx.var is empty")
    ngx.status = 201
    assert.are.equal(0, ngx.status)
  end)

  it("ngx.null, the worker, the config", function()
    local ngx = new_standin().ngx
    assert.are.equal(require("jicoo.webhook.core").null, ngx.null)
    assert.are.equal("userdata", type(ngx.null))
    assert.truthy(ngx.worker.pid() > 0)
    assert.are.equal(0, ngx.worker.id())
    assert.are.equal(1, ngx.worker.count())
    assert.are.equal("/srv/jicoo/", ngx.config.prefix())
    assert.are.equal("http", ngx.config.subsystem)
    assert.has_error(function() return ngx.worker.exiting end,
      "ngx.worker.exiting is not available in jicoo-webhook run (ngx.worker offers count, id, pid)")
  end)

  -- Vectors of RFC 4648, section 10, and nginx's reading up to the first "=".
  local BASE64 = {
    { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
    { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" }, { "\0\255\254", "AP/+" },
  }
  for _, case in ipairs(BASE64) do
    it("base64: " .. string.format("%q", case[1]), function()
      local ngx = new_standin().ngx
      assert.are.equal(case[2], ngx.encode_base64(case[1]))
      assert.are.equal((case[2]:gsub("=", "")), ngx.encode_base64(case[1], true))
      assert.are.equal(case[1], ngx.decode_base64(case[2]))
      assert.are.equal(case[1], ngx.decode_base64((case[2]:gsub("=", ""))))
    end)
  end

  it("base64: nil for what is not base64", function()
    local ngx = new_standin().ngx
    for _, bad in ipairs({ "Z", "Zm9vY", "Zm9v!", "Zm 9v" }) do
      assert.is_nil(ngx.decode_base64(bad), bad)
    end
    assert.has_error(function() ngx.decode_base64(nil) end)
  end)

  it("names what it offers when a handler touches anything else", function()
    local ngx = new_standin().ngx
    for _, name in ipairs({ "req", "re", "md5", "say", "exit", "HTTP_OK", "socket" }) do
      local ok, err = pcall(function() return ngx[name] end)
      assert.is_false(ok)
      assert.truthy(err:find("cli_ngx_spec.lua:%d+: ngx%." .. name .. " is not available in"
        .. " jicoo%-webhook run %(it offers ngx%.config, ngx%.ctx, ngx%.decode_base64, .*ngx%.log,"
        .. " .*ngx%.shared, .*ngx%.worker, and the log levels ngx%.STDERR to ngx%.DEBUG%)$"), err)
    end
  end)

  it("is no global: the library does not think it runs in nginx", function()
    new_standin()
    assert.is_nil(rawget(_G, "ngx"))
    assert.is_false(require("jicoo.net.runtime").has_cosockets())
  end)

  it("refuses an unknown option", function()
    assert.has_error(function() standin.new({ clok = os.time }) end)
  end)
end)
