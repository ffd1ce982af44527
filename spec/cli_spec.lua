-- The jicoo-webhook command, run as a subprocess with the interpreter running this spec: --help
-- and usage errors, check, sign and verify, options that are wrong, example, --version, the
-- manual page and completion it prints, and the README's and docs' recipes as written. Its
-- other commands: cli_run_spec.lua, cli_deliveries_spec.lua, cli_nginx_spec.lua.
local webhook = require "jicoo.webhook"
local support = require "support"
local runner = require "cli_runner"

local FIXTURES = support.fixtures
local SECRET = "whsec_cli_spec"
local jicoo = runner.run
local fixture_path = runner.fixture_path
local q = support.quote

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
