-- The integration specs' handler: one line "<key>\t<worker pid>" appended to
-- <output_dir>/handled.log per run (one write on an O_APPEND file, so lines never mix). With
-- JICOO_TEST_SLEEP it first sleeps that long (a yield: concurrent duplicates overlap it); with
-- JICOO_REDIS (host:port) it also counts the run in Redis through a cosocket (handled:<key>);
-- behind sentinel:// or cluster://, the log alone counts.
-- luacheck: read globals ngx
local function redis_client()
  for _, name in ipairs({ "resty.redis", "nginx.redis" }) do
    local ok, client = pcall(require, name)
    if ok then
      return client
    end
  end
  error("no Redis client")
end

return function(ev, ctx)
  local pause = tonumber(os.getenv("JICOO_TEST_SLEEP") or "")
  if pause and pause > 0 then
    ngx.sleep(pause)
  end
  local address = os.getenv("JICOO_REDIS")
  if address and address ~= "" and not address:find("^%a+://") then
    local host, port = address:match("^(.-):(%d+)$")
    local red = redis_client():new()
    red:set_timeout(1000)
    assert(red:connect(host, tonumber(port)))
    assert(red:incr("handled:" .. ctx.key))
    red:set_keepalive(10000, 16)
  end
  local file = assert(io.open(ctx.config.output_dir .. "/handled.log", "a"))
  assert(file:write(ctx.key .. "\t" .. ev.event .. "\t" .. ngx.worker.pid() .. "\n"))
  assert(file:close())
end
