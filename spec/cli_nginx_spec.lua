-- jicoo-webhook nginx, as a subprocess with the interpreter running this spec: the nginx.conf
-- and folders it writes for this checkout (what nginx runs it with: openresty_setups_spec.lua),
-- and, as root, what it refuses because its workers (nobody) could not read or write it.
local support = require "support"
local runner = require "cli_runner"

local jicoo = runner.run
local q = support.quote

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
