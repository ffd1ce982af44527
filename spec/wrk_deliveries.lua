-- wrk script for the load spec: cycles through signed deliveries prepared by the spec, each
-- record "<signature header>\n<body length>\n<body>", from the file named after `--`.
-- luacheck: globals wrk init request
local requests = {}
local index = 0

function init(args)
  local file = assert(io.open(args[1], "rb"))
  while true do
    local header = file:read("*l")
    if not header then
      break
    end
    local body = file:read(tonumber(file:read("*l")))
    requests[#requests + 1] = wrk.format("POST", wrk.path,
      { ["Content-Type"] = "application/json", ["Jicoo-Webhook-Signature"] = header }, body)
  end
  file:close()
  index = math.random(#requests)
end

function request()
  index = index % #requests + 1
  return requests[index]
end
