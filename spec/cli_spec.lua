-- The jicoo-webhook command, run as a subprocess with the interpreter running this spec.
local webhook = require "jicoo.webhook"
local support = require "support"
local runner = require "cli_runner"

local FIXTURES = support.fixtures
local SECRET = "whsec_cli_spec"
local jicoo = runner.run

local function fixture_path(folder, name)
  return FIXTURES .. "/" .. folder .. "/" .. name
end

local function q(s)
  return support.quote(s)
end

describe("jicoo-webhook", function()
  local help_cases = {
    { "--help", { "check", "sign", "verify", "run", "Exit status" } },
    { "check --help", { "Usage: jicoo-webhook check", "--strict" } },
    { "sign --help", { "Usage: jicoo-webhook sign", "--secret", "--time" } },
    { "verify --help", { "Usage: jicoo-webhook verify", "--header", "--tolerance" } },
    { "run --help", { "Usage: jicoo-webhook run", "--set" } },
  }
  for _, case in ipairs(help_cases) do
    it(case[1] .. " prints help and exits 0", function()
      local code, out = jicoo(case[1])
      assert.are.equal(0, code)
      for _, text in ipairs(case[2]) do
        assert.truthy(out:find(text, 1, true), text)
      end
    end)
  end

  local usage_cases = {
    { "no command", "" },
    { "an unknown command", "frobnicate" },
    { "check without files", "check" },
    { "an unknown option", "check --lenient x.json" },
    { "sign with a bad --time", "sign --secret s --time yesterday x.json" },
    { "verify without --header", "verify --secret s x.json" },
    { "run without files", "run examples/ledger" },
    { "run with a bad --set", "run --set novalue examples/ledger " .. fixture_path("valid", "guest_cancelled.json") },
  }
  for _, case in ipairs(usage_cases) do
    it(case[1] .. " is a usage error (exit 2)", function()
      local code, _, err = jicoo(case[2], "JICOO_WEBHOOK_SECRET=")
      assert.are.equal(2, code)
      assert.truthy(err:find("Error", 1, true) or err:find("--set", 1, true), err)
    end)
  end
end)

describe("jicoo-webhook check", function()
  for _, name in ipairs(support.list(FIXTURES .. "/valid", "%.json$")) do
    it("accepts valid/" .. name .. " at both levels", function()
      for _, flag in ipairs({ "", "--strict " }) do
        local code, out = jicoo("check " .. flag .. q(fixture_path("valid", name)))
        assert.are.equal(0, code, out)
        assert.truthy(out:find(name .. ": ok", 1, true), out)
      end
    end)
  end

  for _, row in ipairs(support.expectations("invalid")) do
    it("rejects invalid/" .. row.file .. " naming the file and " .. tostring(row.path), function()
      local code, out = jicoo("check " .. q(fixture_path("invalid", row.file)))
      assert.are.equal(1, code)
      local line = out:match("[^\n]*" .. row.file:gsub("%p", "%%%0") .. "[^\n]*")
      assert.truthy(line, out)
      assert.truthy(line:find(": invalid: " .. row.code .. ":", 1, true), line)
      if row.path == "" then
        assert.truthy(line:find(": invalid: " .. row.code .. ": (root): ", 1, true), line)
        assert.are.equal(1, select(2, line:gsub("root", "")), line)   -- said once
      elseif row.path then
        assert.truthy(line:find(row.path, 1, true), line)
      else
        assert.truthy(line:find("offset %d+"), line)
      end
    end)
  end

  for _, row in ipairs(support.expectations("lenient")) do
    it("lenient/" .. row.file .. ": ok by default, " .. row.code .. " with --strict", function()
      local path = q(fixture_path("lenient", row.file))
      assert.are.equal(0, (jicoo("check " .. path)))
      local code, out = jicoo("check --strict " .. path)
      assert.are.equal(1, code)
      assert.truthy(out:find("invalid: " .. row.code .. ": " .. row.path, 1, true), out)
    end)
  end

  it("checks every file and exits 1 when any fails", function()
    local code, out = jicoo("check " .. q(fixture_path("valid", "host_cancelled.json")) .. " "
      .. q(fixture_path("invalid", "empty_uid.json")) .. " "
      .. q(fixture_path("valid", "guest_cancelled.json")))
    assert.are.equal(1, code)
    local _, lines = out:gsub("\n", "")
    assert.are.equal(4, lines)   -- one a file, and the summary
    assert.truthy(out:find("\n2 ok, 1 invalid\n$"), out)
  end)

  it("reports a file it cannot read, naming it once", function()
    local code, out = jicoo("check /nonexistent/delivery.json")
    assert.are.equal(1, code)
    assert.are.equal("/nonexistent/delivery.json: unreadable: No such file or directory\n"
      .. "0 ok, 1 invalid\n", out)
  end)

  it("checks the .json files of a folder, in name order, and ends with the counts", function()
    local dir = runner.temp_dir()
    support.write(dir .. "/b.json", support.read(fixture_path("invalid", "empty_uid.json")))
    support.write(dir .. "/a.json", support.read(fixture_path("valid", "guest_cancelled.json")))
    support.write(dir .. "/notes.txt", "not a delivery")
    local code, out = jicoo("check " .. q(dir))
    runner.remove_dir(dir)
    assert.are.equal(1, code)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    assert.are.equal(3, #lines, out)
    assert.are.equal(dir .. "/a.json: ok: guest_cancelled ACDADADASS", lines[1])
    assert.truthy(lines[2]:find("^" .. dir:gsub("%p", "%%%0") .. "/b%.json: invalid: "), lines[2])
    assert.are.equal("1 ok, 1 invalid", lines[3])
  end)

  it("--json: one document with every file's result", function()
    local bad = fixture_path("invalid", "datetime_feb30.json")
    local good = fixture_path("valid", "guest_cancelled.json")
    local code, out = jicoo("check --json " .. q(bad) .. " " .. q(good) .. " /nonexistent.json")
    assert.are.equal(1, code)
    local doc = assert(webhook.decode(out))
    assert.are.equal(1, doc.ok)
    assert.are.equal(2, doc.invalid)
    assert.are.same({ file = bad, ok = false, code = "format", path = "/object/startedAt",
      offset = 152, message = "format: /object/startedAt: not an RFC 3339 date-time: day out of"
        .. " range for the month (offset 152)" }, doc.files[1])
    assert.are.same({ file = good, ok = true, event = "guest_cancelled", uid = "ACDADADASS",
      known = true }, doc.files[2])
    assert.are.same({ file = "/nonexistent.json", ok = false, code = "unreadable",
      message = "No such file or directory" }, doc.files[3])
  end)

  it("takes the limits as options", function()
    local file = fixture_path("valid", "guest_cancelled.json")
    assert.are.equal(0, (jicoo("check " .. q(file))))
    local code, out = jicoo("check --max-string 5 " .. q(file))
    assert.are.equal(1, code)
    assert.truthy(out:find(": invalid: limit: a string of %d+ bytes is over max_string %(5%)"), out)
    code, out = jicoo("check --max-depth 1 " .. q(file))
    assert.are.equal(1, code)
    assert.truthy(out:find("max_depth", 1, true), out)
    assert.are.equal(2, (jicoo("check --max-size lots " .. q(file))))
  end)

  it("reads standard input for '-'", function()
    local code, out = jicoo("check -", nil, fixture_path("valid", "tokyo_no_utm_compact.json"))
    assert.are.equal(0, code)
    assert.truthy(out:find("-: ok: guest_booked bk_7Hq2", 1, true), out)
  end)
end)

describe("jicoo-webhook sign and verify", function()
  local file = fixture_path("valid", "guest_cancelled.json")
  local body = support.read(file)
  local t = 1662520836
  local header = webhook.sign(SECRET, body, t)

  it("sign prints the header webhook.sign computes", function()
    local code, out = jicoo("sign --secret " .. q(SECRET) .. " --time " .. t .. " " .. q(file))
    assert.are.equal(0, code)
    assert.are.equal(header .. "\n", out)
  end)

  it("sign takes the secret from JICOO_WEBHOOK_SECRET", function()
    local code, out = jicoo("sign --time " .. t .. " " .. q(file), "JICOO_WEBHOOK_SECRET=" .. SECRET)
    assert.are.equal(0, code)
    assert.are.equal(header .. "\n", out)
  end)

  it("sign without any secret is a usage error", function()
    local code, _, err = jicoo("sign " .. q(file), "JICOO_WEBHOOK_SECRET=")
    assert.are.equal(2, code)
    assert.truthy(err:find("secret", 1, true))
  end)

  it("sign defaults the time to now", function()
    local before = os.time()
    local _, out = jicoo("sign --secret " .. q(SECRET) .. " " .. q(file))
    local signed_at = tonumber(out:match("^t=(%d+),v1=%x+\n$"))
    assert.truthy(signed_at and signed_at >= before and signed_at <= os.time() + 1, out)
  end)

  local verify_cases = {
    { "a good signature", SECRET, header, "--now " .. t, 0, "signature valid" },
    { "the wrong secret", "whsec_other", header, "--now " .. t, 1, "signature invalid: mismatch: " },
    { "an old signature", SECRET, header, "--now " .. (t + 301), 1, "signature invalid: expired: " },
    { "an old signature, told how old", SECRET, header, "--now " .. (t + 301), 1, "301" },
    { "an old signature, told the tolerance", SECRET, header, "--now " .. (t + 301), 1, "300" },
    { "an old signature with --tolerance 0", SECRET, header, "--tolerance 0", 0, "signature valid" },
    { "a header without v1", SECRET, "t=" .. t, "--now " .. t, 1, "signature invalid: no_signature: " },
    { "a malformed header", SECRET, "v1=abc", "--now " .. t, 1, "signature invalid: malformed_header: " },
  }
  for _, case in ipairs(verify_cases) do
    it("verify: " .. case[1] .. " -> exit " .. case[5], function()
      local code, out = jicoo("verify --secret " .. q(case[2]) .. " --header " .. q(case[3]) .. " "
        .. case[4] .. " " .. q(file))
      assert.are.equal(case[5], code)
      assert.truthy(out:find(case[6], 1, true), out)
      assert.truthy(out:find(file, 1, true), out)
    end)
  end
end)

describe("jicoo-webhook: options that are wrong say so, naming the option", function()
  local file = fixture_path("valid", "guest_cancelled.json")

  it("a negative --tolerance is a bad value, not an unknown option", function()
    local code, _, err = jicoo("verify --secret s --header t=1,v1=00 --tolerance -5 " .. q(file))
    assert.are.equal(2, code)
    assert.truthy(err:find("--tolerance takes seconds, whole and 0 or more; got '-5'", 1, true), err)
    assert.falsy(err:find("unknown option", 1, true), err)
  end)

  it("a secret with whitespace around it, from --secret or the environment, is refused", function()
    for _, case in ipairs({
      { "sign --secret " .. q(SECRET .. " ") .. " " .. q(file), "", "--secret" },
      { "verify --secret " .. q(" " .. SECRET) .. " --header t=1,v1=00 " .. q(file), "", "--secret" },
      { "sign " .. q(file), "JICOO_WEBHOOK_SECRET=" .. q(SECRET .. "\n"), "JICOO_WEBHOOK_SECRET" },
    }) do
      local code, out, err = jicoo(case[1], case[2])
      assert.are.equal(2, code, case[1])
      assert.are.equal("", out)
      assert.truthy(err:find(case[3] .. " starts or ends with whitespace", 1, true), err)
    end
  end)

  it("help COMMAND says what COMMAND --help says", function()
    for _, command in ipairs({ "check", "send", "nginx" }) do
      local code, out = jicoo("help " .. command)
      local _, direct = jicoo(command .. " --help")
      assert.are.equal(0, code)
      assert.truthy(out:find("Usage: jicoo-webhook " .. command, 1, true), out)
      assert.are.equal(direct, out)
    end
  end)

  it("without argparse, even --help says what to install, and nothing else fails", function()
    local root = support.root
    local path = q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua")   -- no ";;": no argparse
    local code, out, err = jicoo("--help", "LUA_PATH=" .. path)
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("jicoo-webhook needs the Lua module argparse: on Debian `apt-get install"
      .. " lua-argparse`, elsewhere `luarocks install argparse`\n", err)
  end)
end)

describe("jicoo-webhook example", function()
  local fixed = {}
  for _, event in ipairs(webhook.EVENTS) do
    it(event .. ": a delivery of that event, valid at the strict level", function()
      local code, out = jicoo("example " .. event)
      assert.are.equal(0, code)
      local ev, msg = webhook.parse(out, { level = "strict" })
      assert.truthy(ev, msg)
      assert.are.equal(event, ev.event)
      local cancelled = ev:kind() == "cancelled"
      for _, field in ipairs({ "cancelledAt", "cancelReason", "cancelledBy" }) do
        local value = ev.object[field]
        assert.are.equal(cancelled, value ~= nil and value ~= webhook.null, field)
      end
      if cancelled then
        assert.are.equal(ev:actor(), ev.object.cancelledBy)
      end
      assert.truthy(ev.object:duration() > 0)
      fixed[event] = out
    end)
  end

  it("prints the same text every time, and --now stamps the clock", function()
    local _, again = jicoo("example guest_booked")
    assert.are.equal(fixed.guest_booked, again)
    local before = os.time()
    local _, now = jicoo("example --now guest_booked")
    local ev = assert(webhook.parse(now, { level = "strict" }))
    assert.truthy(ev:created_at() >= before - 1 and ev:created_at() <= os.time() + 1,
      ev.createdAt)
    assert.truthy(ev.object.uid ~= assert(webhook.parse(again)).object.uid)
  end)

  it("refuses an event it does not know, naming the five", function()
    local code, _, err = jicoo("example guest_vanished")
    assert.are.equal(2, code)
    assert.truthy(err:find("guest_booked", 1, true) and err:find("host_cancelled", 1, true), err)
  end)
end)

describe("jicoo-webhook run", function()
  local dir

  before_each(function()
    dir = runner.temp_dir()
  end)

  after_each(function()
    runner.remove_dir(dir)
  end)

  local function script(name, source)
    support.write(dir .. "/" .. name, source)
  end

  local booked = fixture_path("lenient", "portal_guest_booked.json")
  local cancelled = fixture_path("valid", "guest_cancelled.json")

  it("replays files through the scripts and prints what each handler did", function()
    script("guest_booked.lua", [[
      return function(ev, ctx)
        print("welcome " .. ev.object.contact.name)
        ctx.log("greeted %s", ev.object.uid)
      end]])
    script("any.lua", "return function(ev, ctx) ctx.log.warn('saw ' .. ev.event) end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked) .. " " .. q(cancelled) .. " " .. q(booked))
    assert.are.equal(0, code, out)
    local expected = {
      "== " .. booked,
      "  [warn] " .. dir .. "/any.lua: saw guest_booked",
      "welcome John Doe",
      "  [info] " .. dir .. "/guest_booked.lua: greeted ACDADADASS",
      "  ran " .. dir .. "/any.lua",
      "  ran " .. dir .. "/guest_booked.lua",
      '  -> 200 {"event":"guest_booked","handlers":2,"ok":true,"result":"handled"}',
      "== " .. cancelled,
      "  [warn] " .. dir .. "/any.lua: saw guest_cancelled",
      "  ran " .. dir .. "/any.lua",
      '  -> 200 {"event":"guest_cancelled","handlers":1,"ok":true,"result":"handled"}',
      "== " .. booked,
    }
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    for i, line in ipairs(expected) do
      assert.are.equal(line, lines[i])
    end
    -- The same delivery twice: the second is a duplicate and runs nothing.
    assert.truthy(lines[#lines]:find('"result":"duplicate"', 1, true), out)
  end)

  it("--set fills ctx.config", function()
    script("guest_booked.lua", "return function(_, ctx) print('channel=' .. ctx.config.channel) end\n")
    local code, out = jicoo("run --set channel=#sales=1 " .. q(dir) .. " " .. q(booked))
    assert.are.equal(0, code)
    assert.truthy(out:find("channel=#sales=1\n", 1, true), out)
  end)

  it("a failing handler: exit 1, FAILED and 500 shown", function()
    script("guest_booked.lua", "return function() error('smtp down') end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find("FAILED " .. dir .. "/guest_booked.lua: " .. dir .. "/guest_booked.lua:1: smtp down",
      1, true), out)
    assert.truthy(out:find("-> 500", 1, true), out)
  end)

  it("a broken script: exit 1 naming the file; the other scripts still run, its delivery fails", function()
    script("guest_booked.lua", "return function( print('x') end\n")
    script("any.lua", "return function() print('any ran') end\n")
    local code, out, err = jicoo("run " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(err:find(dir .. "/guest_booked.lua:1:", 1, true), err)
    assert.truthy(out:find("any ran", 1, true), out)
    assert.truthy(out:find("FAILED " .. dir .. "/guest_booked.lua: the script did not load: " .. dir
      .. "/guest_booked.lua:1:", 1, true), out)
    assert.truthy(out:find("-> 500", 1, true), out)
  end)

  it("an invalid payload: exit 1 with the code and pointer", function()
    script("any.lua", "return function() print('must not run') end\n")
    local code, out = jicoo("run " .. q(dir) .. " " .. q(fixture_path("invalid", "uid_number.json")))
    assert.are.equal(1, code)
    assert.truthy(out:find("parse error: type: /object/uid: expected string", 1, true), out)
    assert.truthy(out:find("-> 400", 1, true), out)
    assert.falsy(out:find("must not run", 1, true))
  end)

  it("--strict parses at the strict level", function()
    script("any.lua", "return function() end\n")
    local code, out = jicoo("run --strict " .. q(dir) .. " " .. q(booked))
    assert.are.equal(1, code)
    assert.truthy(out:find('"code":"missing"', 1, true), out)
  end)
end)

describe("jicoo-webhook run: loading nothing", function()
  it("stops, exit 1, before replaying, when the folder does not exist or holds no script", function()
    local empty = runner.temp_dir()
    for _, folder in ipairs({ empty .. "/nosuchdir", empty }) do
      local code, out, err = jicoo("run " .. q(folder) .. " " .. q(fixture_path("valid",
        "guest_cancelled.json")))
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.truthy(err:find(folder, 1, true), err)
    end
    local _, _, err = jicoo("run " .. q(empty) .. " " .. q(fixture_path("valid", "guest_cancelled.json")))
    assert.truthy(err:find("no handler scripts", 1, true), err)
    runner.remove_dir(empty)
  end)
end)

describe("jicoo-webhook deliveries", function()
  local journal = require "jicoo.webhook.journal"
  local dir, journal_dir
  local KEY = "guest_booked/ACDADADASS/2020-11-23T17:51:19.000Z"
  local booked = fixture_path("lenient", "portal_guest_booked.json")

  before_each(function()
    dir = runner.temp_dir()
    journal_dir = dir .. "/journal"
    -- A receiver's journal: one delivery dead (its handler always failed), one done.
    local r = webhook.router({ verify = false, journal = journal.sqlite({ dir = journal_dir }),
      retry_delays = {}, log = function() end })
    r:on("guest_booked", function() error("crm down\nsecond line") end)
    assert.are.equal(500, r:handle(support.read(booked)).status)
    assert.are.equal(200, r:handle(support.read(fixture_path("valid", "host_cancelled.json"))).status)
  end)

  after_each(function()
    runner.remove_dir(dir)
  end)

  local function deliveries(args)
    return jicoo("deliveries " .. args .. " --journal " .. q(journal_dir))
  end

  it("lists failed, dead and running deliveries, one line each starting with state and key", function()
    local code, out = deliveries("list")
    assert.are.equal(0, code)
    local lines = {}
    for line in out:gmatch("[^\n]+") do
      lines[#lines + 1] = line
    end
    assert.are.equal(1, #lines, out)
    assert.truthy(lines[1]:find("^dead " .. KEY:gsub("%p", "%%%0") .. " attempts=1 error="), lines[1])
    assert.truthy(lines[1]:find("crm down second line", 1, true) or lines[1]:find("crm down", 1, true))
  end)

  it("lists by --state", function()
    local _, out = deliveries("list --state done")
    assert.truthy(out:find("^done host_cancelled/"), out)
    _, out = deliveries("list --state all")
    assert.truthy(out:find("\ndone host_cancelled/", 1, true) or out:find("^done host_cancelled/"), out)
    assert.truthy(out:find("dead " .. KEY, 1, true), out)
    local code = deliveries("list --state nonsense")
    assert.are.equal(2, code)
  end)

  it("shows one delivery with its errors and body, and exits 1 for an unknown key", function()
    local code, out = deliveries("show " .. q(KEY))
    assert.are.equal(0, code)
    assert.truthy(out:find("state:        dead", 1, true), out)
    assert.truthy(out:find("crm down", 1, true), out)
    assert.truthy(out:find('"uid": "ACDADADASS"', 1, true), out)
    code = deliveries("show nosuch/key/t")
    assert.are.equal(1, code)
  end)

  it("retries a dead delivery (due now, a new budget) and drops one", function()
    local code, out = deliveries("retry " .. q(KEY))
    assert.are.equal(0, code, out)
    local record = journal.sqlite({ dir = journal_dir }):get(KEY)
    assert.are.equal("failed", record.state)
    assert.are.equal(0, record.attempts)
    assert.truthy(record.next_at <= os.time())
    code = deliveries("retry " .. q("host_cancelled/ACDADADASS/2020-11-23T17:51:19.000Z"))
    assert.are.equal(1, code)   -- done: nothing to retry
    code = deliveries("drop " .. q(KEY))
    assert.are.equal(0, code)
    assert.is_nil(journal.sqlite({ dir = journal_dir }):get(KEY))
    code = deliveries("drop " .. q(KEY))
    assert.are.equal(1, code)
  end)

  it("prints a uid's and an error's control bytes escaped, never raw", function()
    -- "\u001b]0;pwned\u0007" retitles a terminal, "\u001b[2J" clears it, U+009B is C1's CSI
    local body = support.read(booked):gsub('"uid": "ACDADADASS"',
      '"uid": "X\\u001b]0;pwned\\u0007\\u001b[2J\\u009b31m"')
    local r = webhook.router({ verify = false, journal = journal.sqlite({ dir = journal_dir }),
      retry_delays = {}, log = function() end })
    r:on("guest_booked", function() error("down\27[31m\r") end)
    assert.are.equal(500, r:handle(body).status)
    local key = r.journal:list("dead")
    for _, record in ipairs(key) do
      if record.uid ~= "ACDADADASS" then
        key = record.key
      end
    end
    assert.are.equal("string", type(key))
    local code, out = deliveries("list")
    assert.are.equal(0, code)
    local show_code, show = deliveries("show " .. q(key))
    assert.are.equal(0, show_code, show)
    for _, text in ipairs({ out, show }) do
      assert.is_nil(text:find("[%z\1-\8\11-\31\127]"), text)
      assert.is_nil(text:find("\194\155", 1, true), text)
      assert.truthy(text:find("X\\x1b]0;pwned\\x07\\x1b[2J\\xc2\\x9b31m", 1, true), text)
      assert.truthy(text:find("down\\x1b[31m\\x0d", 1, true), text)
    end
  end)

  it("refuses a journal folder that is not there, and an empty key", function()
    local code, out, err = jicoo("deliveries list --journal " .. q(dir .. "/nowhere"))
    assert.are.equal(1, code)
    assert.are.equal("", out)
    assert.truthy(err:find("no journal at " .. dir .. "/nowhere", 1, true), err)
    assert.is_nil(io.open(dir .. "/nowhere"))   -- and made none
    for _, action in ipairs({ "show", "retry", "drop" }) do
      code, _, err = deliveries(action .. " ''")
      assert.are.equal(2, code)
      assert.truthy(err:find("an empty key names no delivery", 1, true), err)
    end
  end)

  -- Run as root on a journal nginx's workers (nobody) own, it acts as nobody: every file it
  -- leaves is nobody's, whatever key it was given.
  local as_root = support.run("id -u"):match("^0") and it or function(name)
    pending(name .. " (needs root)")
  end
  as_root("as root, acts as the journal's owner and leaves nothing root's", function()
    assert(support.run("chown -R nobody:nogroup " .. q(journal_dir)))
    for _, args in ipairs({ "list", "show " .. q(KEY), "retry " .. q(KEY), "retry nosuch/key/t",
        "drop nosuch/key/t", "retry " .. q("guest_booked/a b/c") }) do
      deliveries(args)
    end
    local code, out = deliveries("list --state all")
    assert.are.equal(0, code)
    assert.truthy(out:find("failed " .. KEY, 1, true), out)
    local foreign = support.run("find " .. q(journal_dir) .. " ! -user nobody")
    assert.are.equal("", foreign)
  end)

  -- The embedded journal before SQLite kept a JSON file a record: open/, done/, dead/.
  it("imports a file journal: every record once, the newer copy, what is not a record left", function()
    local from = dir .. "/files"
    local function record(folder, key, state, version, extra)
      local fields = { key = key, event = "guest_booked", uid = key:match("/([^/]+)/"),
        state = state, version = version, attempts = 2, received_at = 1700000000,
        handlers = { ["a.lua"] = true }, errors = { { handler = "b.lua", message = "down" } },
        body = '{"a":1}', next_at = 1700000100, finished_at = 1700000050 }
      for name, value in pairs(extra or {}) do
        fields[name] = value
      end
      assert(support.run("mkdir -p " .. q(from .. "/" .. folder)))
      support.write(from .. "/" .. folder .. "/" .. key:gsub("[^%w._-]", function(c)
        return string.format("%%%02X", c:byte()) end) .. ".json", require("jicoo.webhook.payload.json").encode(fields))
    end
    record("open", "guest_booked/imp_failed/t", "failed", 3)
    record("dead", "guest_booked/imp_dead/t", "dead", 5)
    record("done", "guest_booked/imp_done/t", "done", 4, { expires_at = os.time() + 3600 })
    -- a crash between a move's two steps: the copy with the higher version is the record
    record("open", "guest_booked/imp_moved/t", "failed", 6)
    record("dead", "guest_booked/imp_moved/t", "dead", 7)
    support.write(from .. "/open/garbage.json", "{not json")
    assert(support.run("mkfifo " .. q(from .. "/dead/fifo.json")))
    local code, out, err = jicoo("deliveries import --from-files " .. q(from) .. " --journal " .. q(journal_dir))
    assert.are.equal(1, code, out .. err)   -- two files left
    assert.truthy(out:find("4 records in " .. from .. ": 4 written into " .. journal_dir, 1, true), out)
    assert.truthy(err:find("left " .. from .. "/open/garbage.json: not a journal record", 1, true), err)
    assert.truthy(err:find("left " .. from .. "/dead/fifo.json: a fifo, not a record", 1, true), err)
    local j = journal.sqlite({ dir = journal_dir })
    local states = { imp_failed = "failed", imp_dead = "dead", imp_done = "done", imp_moved = "dead" }
    for uid, state in pairs(states) do
      local r = j:get("guest_booked/" .. uid .. "/t")
      assert.are.equal(state, r.state, uid)
      assert.are.same({ ["a.lua"] = true }, r.handlers)
      assert.are.equal("down", r.errors[1].message)
      assert.are.equal(2, r.attempts)
    end
    assert.are.equal('{"a":1}', j:get("guest_booked/imp_dead/t").body)
    assert.is_nil(j:get("guest_booked/imp_done/t").body)
    assert.are.equal(7, j:get("guest_booked/imp_moved/t").version)
    -- a failed one is due, as it was
    local due = j:due(1700000100, 10)
    assert.truthy(table.concat(due, " "):find("guest_booked/imp_failed/t", 1, true))
    -- the imported files are gone, the folder that only held them too
    assert.is_nil(io.open(from .. "/done"))
    assert.are.equal("{not json", support.read(from .. "/open/garbage.json"))
    -- run again: nothing new, the two files still left
    code, out = jicoo("deliveries import --from-files " .. q(from) .. " --journal " .. q(journal_dir))
    assert.are.equal(1, code)
    assert.truthy(out:find("0 records in " .. from, 1, true), out)
  end)

  it("needs a journal: a usage error without --journal or --redis", function()
    local code, _, err = jicoo("deliveries list", "JICOO_JOURNAL_DIR= JICOO_REDIS=")
    assert.are.equal(2, code)
    assert.truthy(err:find("--journal", 1, true), err)
    code = jicoo("deliveries list --journal " .. q(journal_dir) .. " --redis 127.0.0.1:1")
    assert.are.equal(2, code)
  end)

  it("reads $JICOO_JOURNAL_DIR", function()
    local code, out = jicoo("deliveries list", "JICOO_JOURNAL_DIR=" .. q(journal_dir))
    assert.are.equal(0, code)
    assert.truthy(out:find("dead " .. KEY, 1, true), out)
  end)
end)

describe("jicoo-webhook nginx", function()
  it("writes a runnable nginx.conf for this checkout and the folders nginx writes", function()
    local dir = runner.temp_dir()
    local prefix = dir .. "/site"
    local code, out = jicoo("nginx " .. q(prefix) .. " --listen 127.0.0.1:18181")
    assert.are.equal(0, code, out)
    local conf = support.read(prefix .. "/conf/nginx.conf")
    local root = support.root
    assert.truthy(conf:find('lua_package_path "' .. root .. "/lua/?.lua;" .. root
      .. '/lua/?/init.lua;;";', 1, true), conf)
    assert.truthy(conf:find('lua_package_cpath "' .. root .. '/build/luajit/?.so;;";', 1, true))
    assert.truthy(conf:find("listen 127.0.0.1:18181;", 1, true))
    assert.truthy(conf:find('"' .. root .. '/examples/ledger"', 1, true))
    for _, folder in ipairs({ "logs", "tmp", "journal", "out" }) do
      assert.truthy(require("jicoo.webhook.core").file_list(prefix .. "/" .. folder), folder)
    end
    local is_root = support.run("id -u"):match("^0")
    if is_root then
      -- the workers run as nobody, and write the journal and the automations' files
      assert.truthy(conf:find("\nuser nobody nogroup;\n", 1, true))
      assert.are.equal("nobody", (support.run("stat -c %U " .. q(prefix .. "/journal")):gsub("%s+$", "")))
    end
    assert.truthy(out:find("nginx -p " .. prefix .. " -c conf/nginx.conf", 1, true), out)
    runner.remove_dir(dir)
  end)

  it("wants an absolute PREFIX", function()
    local code = jicoo("nginx relative/site")
    assert.are.equal(2, code)
  end)

  local as_root = support.run("id -u"):match("^0") and it or function(name)
    pending(name .. ": as another user, the workers run as that user, with nothing to refuse")
  end
  as_root("as root, refuses what its workers (nobody) could not read or write, naming it", function()
    local dir = runner.temp_dir()
    assert(support.run("chmod 700 " .. q(dir) .. " && mkdir -p " .. q(dir .. "/handlers")
      .. " && cp " .. q(support.root .. "/examples/ledger/any.lua") .. " " .. q(dir .. "/handlers/")))
    local open_dir = runner.temp_dir()
    assert(support.run("chmod 755 " .. q(open_dir)))
    local code, _, err = jicoo("nginx " .. q(open_dir .. "/site") .. " --handlers " .. q(dir .. "/handlers"))
    assert.are.equal(1, code)
    assert.truthy(err:find("nobody, who cannot read " .. dir .. "/handlers:", 1, true), err)
    code, _, err = jicoo("nginx " .. q(dir .. "/site"))
    assert.are.equal(1, code)
    assert.truthy(err:find("nobody, who cannot reach " .. dir .. "/site/journal:", 1, true), err)
    runner.remove_dir(dir)
    runner.remove_dir(open_dir)
  end)
end)

describe("jicoo-webhook's manual page and completion", function()
  -- Both are made from the --help text and installed from docs/; these are what the command makes now.
  local cases = {
    { "man", "docs/jicoo-webhook.1" },
    { "completion bash", "docs/completion/jicoo-webhook.bash" },
  }
  for _, case in ipairs(cases) do
    it(case[2] .. " is what `jicoo-webhook " .. case[1] .. "` prints", function()
      local code, out = jicoo(case[1])
      assert.are.equal(0, code)
      assert.are.equal(support.read(support.root .. "/" .. case[2]), out)
    end)
  end

  it("the completion script is valid bash", function()
    local _, ok = support.run("bash -n " .. q(support.root .. "/docs/completion/jicoo-webhook.bash"))
    assert.is_true(ok)
  end)

  it("prints its version", function()
    local code, out = jicoo("--version")
    assert.are.equal(0, code)
    assert.are.equal("jicoo-webhook " .. require("jicoo.webhook")._VERSION .. "\n", out)
  end)
end)

describe("the README's and docs' recipes, as written", function()
  local readme = support.read(support.root .. "/README.md")

  -- The fenced block of `lang` ("" for none) that holds `marker`.
  local function block(text, lang, marker)
    local open_lang, lines
    for line in text:gmatch("([^\n]*)\n") do
      local fence = line:match("^```(%S*)$")
      if fence and not open_lang then
        open_lang, lines = fence, {}
      elseif fence then
        local code = table.concat(lines, "\n") .. "\n"
        if open_lang == lang and code:find(marker, 1, true) then
          return code
        end
        open_lang = nil
      elseif open_lang then
        lines[#lines + 1] = line
      end
    end
    error("no ```" .. lang .. " block with " .. marker)
  end

  it("the handler example runs on the full fixture and prints what the README shows", function()
    local script = block(readme, "lua", "-- handlers/guest_booked.lua")
    local shown = block(readme, "", "$ jicoo-webhook run handlers/")
    local dir = runner.temp_dir()
    assert(support.run("mkdir -p " .. q(dir .. "/handlers")))
    support.write(dir .. "/handlers/guest_booked.lua", script)
    -- the command as shown, with the folder and the fixture where this spec has them
    local fixture = "spec/fixtures/valid/strict_guest_booked_full.json"
    local function here(text)
      return (text:gsub(fixture:gsub("%p", "%%%0"), support.root .. "/" .. fixture)
        :gsub("handlers/", dir .. "/handlers/"))
    end
    local command = assert(shown:match("^%$ jicoo%-webhook ([^\n]*)\n"), shown)
    local code, out = jicoo(here(command))
    runner.remove_dir(dir)
    assert.are.equal(0, code, out)
    assert.are.equal(here(shown:gsub("^[^\n]*\n", "")), out)
  end)

  it("the handler example runs on a delivery without answers (answers = [])", function()
    local script = block(readme, "lua", "-- handlers/guest_booked.lua")
    local dir = runner.temp_dir()
    assert(support.run("mkdir -p " .. q(dir .. "/handlers")))
    support.write(dir .. "/handlers/guest_booked.lua", script)
    local code, out = jicoo("run " .. q(dir .. "/handlers") .. " "
      .. q(fixture_path("valid", "tokyo_no_utm_compact.json")))
    runner.remove_dir(dir)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("booked bk_7Hq2 (60 min)", 1, true), out)
    assert.truthy(out:find('"result":"handled"', 1, true), out)
  end)

  it("the shell sign recipe signs the exact bytes, as openssl computes them", function()
    local recipe = block(support.read(support.root .. "/docs/cli.md"), "sh", "| jicoo-webhook sign")
    local line = recipe:match("[^\n]*| jicoo%-webhook sign[^\n]*")
    local body = support.read(fixture_path("valid", "guest_cancelled.json")):gsub("\n$", "")
    local dir = runner.temp_dir()
    -- the command on PATH, as an installation has it
    support.write(dir .. "/jicoo-webhook", "#!/bin/sh\nexec " .. q(runner.interpreter()) .. " "
      .. q(runner.launcher) .. " \"$@\"\n")
    local out = support.run("chmod +x " .. q(dir .. "/jicoo-webhook") .. " && PATH=" .. q(dir)
      .. ":$PATH body=" .. q(body) .. " SECRET=" .. q(SECRET) .. " && " .. line)
    local t = assert(tonumber(out:match("^t=(%d+),v1=")), out)
    support.write(dir .. "/signed", t .. "." .. body)
    local hmac = support.run("openssl dgst -sha256 -hmac " .. q(SECRET) .. " -r " .. q(dir .. "/signed"))
    runner.remove_dir(dir)
    assert.are.equal("t=" .. t .. ",v1=" .. hmac:match("^(%x+)") .. "\n", out)
  end)
end)
