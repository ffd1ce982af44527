-- The durability specs' second handler, told what to do by files the spec writes in
-- <output_dir>: every attempt first appends "<key>\t<worker pid>" to attempts.log; then
--   sleep        holds a number of seconds to sleep on a delivery's first attempt (a yield,
--                during which the spec can kill the worker);
--   fail         while it exists, every attempt fails;
--   fail_times   holds N: a delivery's first N attempts fail;
-- and a success appends "<key>" to booked.log, which must end with one line per delivery.
-- luacheck: read globals ngx
local function read(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local text = file:read("*a")
  file:close()
  return text
end

local function append(path, line)
  local file = assert(io.open(path, "a"))
  assert(file:write(line .. "\n"))
  assert(file:close())
end

local function attempts_of(path, key)
  local count = 0
  for line in (read(path) or ""):gmatch("[^\n]+") do
    if line:match("^([^\t]+)") == key then
      count = count + 1
    end
  end
  return count
end

return function(_, ctx)
  local dir = ctx.config.output_dir
  append(dir .. "/attempts.log", ctx.key .. "\t" .. ngx.worker.pid())
  local attempt = attempts_of(dir .. "/attempts.log", ctx.key)
  local pause = tonumber(read(dir .. "/sleep") or "")
  if pause and attempt == 1 then
    ngx.sleep(pause)
  end
  if read(dir .. "/fail") then
    error("told to fail (attempt " .. attempt .. ")")
  end
  local fail_times = tonumber(read(dir .. "/fail_times") or "")
  if fail_times and attempt <= fail_times then
    error("failing attempt " .. attempt .. " of " .. fail_times)
  end
  append(dir .. "/booked.log", ctx.key)
end
