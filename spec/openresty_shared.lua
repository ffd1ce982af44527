-- What the nginx integration specs openresty_spec and openresty_setups_spec share: the secret
-- their deliveries are signed with, the test handlers' folder, a fixture's path, a delivery's key
-- computed from an independent decoder, the runs per key in handled.log, a signed POST, and the
-- nginx servers of one describe block. They require it only once JICOO_INTEGRATION=1 (it loads
-- spec/servers.lua).
local cjson = require "cjson"
local support = require "support"
local servers = require "servers"
-- Busted's setup and teardown for with_servers: a module's globals are not a spec's.
local busted = require "busted"
local setup, teardown = busted.setup, busted.teardown

local SECRET = "whsec_openresty_spec"
local HANDLERS = servers.spec_dir .. "/nginx_handlers"

local function fixture(folder, name)
  return support.fixtures .. "/" .. folder .. "/" .. name
end

-- The idempotency key as the README defines it, computed here from an independent decoder.
local function key_of(path)
  local doc = cjson.decode(support.read(path))
  local function escape(s)
    return (s:gsub("%%", "%%25"):gsub("/", "%%2F"))
  end
  return escape(doc.event) .. "/" .. escape(doc.object.uid) .. "/" .. doc.createdAt
end

-- handled.log as { [key] = runs }, and the runs in all.
local function handled(dir)
  return servers.counts(dir .. "/handled.log")
end

local wait_for = servers.wait_for

local function signed_post(server, path, t)
  t = t or os.time()
  return servers.post(server:url(), path,
    { ["Jicoo-Webhook-Signature"] = servers.sign(SECRET, t, path) })
end

-- The nginx servers of one describe block: started in setup, stopped by pid in teardown.
local function with_servers()
  local state = { servers = {} }
  function state.start(name, opts, env)
    opts = opts or {}
    local output = state.dir .. "/" .. name .. "-out"
    assert(support.run("mkdir -p " .. support.quote(output)))
    local full_env = {
      JICOO_WEBHOOK_SECRET = SECRET,
      JICOO_HANDLERS = opts.handlers or HANDLERS,
      JICOO_OUTPUT_DIR = output,
    }
    for k, v in pairs(env or {}) do
      full_env[k] = v
    end
    local render = opts.render or function(port)
      return servers.config(port, opts)
    end
    local server, log = servers.nginx_server(state.dir, name, render, full_env)
    assert(server, "nginx did not start:\n" .. tostring(log))
    server.output = output
    state.servers[#state.servers + 1] = server
    return server
  end
  setup(function()
    state.dir = servers.temp_dir()
  end)
  teardown(function()
    for _, server in ipairs(state.servers) do
      server:stop()
    end
    servers.remove_dir(state.dir)
  end)
  return state
end

return {
  SECRET = SECRET,
  fixture = fixture,
  key_of = key_of,
  handled = handled,
  wait_for = wait_for,
  signed_post = signed_post,
  with_servers = with_servers,
}
