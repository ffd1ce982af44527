-- wrk script for spec/bench/nginx.sh and the load run of spec/openresty_spec.lua: sends the
-- signed deliveries of the file named after `--`
-- (records "<signature header>\n<body length>\n<body>"), each at most once per run: with
-- -tT (and `-- FILE T`), thread k sends records k, k+T, k+2T, ... and wraps around only after
-- its whole share (nginx.sh makes more records than a round sends, and checks that it did).
-- luacheck: globals wrk setup init request id
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
end

local requests = {}
local index = 0

function init(args)
  local me, of = id or 1, tonumber(args[2]) or 1
  local file = assert(io.open(args[1], "rb"))
  local n = 0
  while true do
    local header = file:read("*l")
    if not header then
      break
    end
    local body = file:read(tonumber(file:read("*l")))
    n = n + 1
    if n % of == me - 1 then
      requests[#requests + 1] = wrk.format("POST", wrk.path,
        { ["Content-Type"] = "application/json", ["Jicoo-Webhook-Signature"] = header }, body)
    end
  end
  file:close()
  assert(#requests > 0, "nginx_wrk.lua: no deliveries for thread " .. me)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
