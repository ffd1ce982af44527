-- jicoo-webhook deliveries, as a subprocess with the interpreter running this spec, on a SQLite
-- journal a router wrote: list (by state), show, retry and drop, control bytes printed escaped,
-- a missing folder and an empty key refused, acting as the journal's owner when run as root, a
-- file journal imported, and the journal named by --journal or $JICOO_JOURNAL_DIR.
local webhook = require "jicoo.webhook"
local support = require "support"
local runner = require "cli_runner"

local jicoo = runner.run
local fixture_path = runner.fixture_path
local q = support.quote

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
    assert.are.equal(2, #lines, out)
    assert.are.equal("1 delivery: 1 dead", lines[2])   -- the count line
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
    assert.are.equal(1, record.attempts)      -- kept: the attempts go on counting
    assert.are.equal(1, record.budget_from)   -- the new budget counts from them
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

  it("refuses a --redis that is no Redis address form, naming the forms", function()
    for _, address in ipairs({ "redis://127.0.0.1:6379", "sentinel://127.0.0.1:1/", "h:99999" }) do
      local code, _, err = jicoo("deliveries list --redis " .. q(address), "JICOO_JOURNAL_DIR=")
      assert.are.equal(2, code, err)
      assert.truthy(err:find("--redis: ", 1, true), err)
    end
  end)

  it("reads $JICOO_JOURNAL_DIR", function()
    local code, out = jicoo("deliveries list", "JICOO_JOURNAL_DIR=" .. q(journal_dir))
    assert.are.equal(0, code)
    assert.truthy(out:find("dead " .. KEY, 1, true), out)
  end)
end)
