-- Measuring, for spec/bench/bench.lua: a compiled loop per row and payload, batches timed in CPU
-- seconds, the calls per batch calibrated, bytes per call (the heap's growth and, where
-- spec/bench/alloc_counter.c is built, what was asked of the allocator), and the median.
local clock = os.clock
local collectgarbage = collectgarbage
local string_format = string.format
local table_sort = table.sort
local load_source = rawget(_G, "loadstring") or load

local function median(list)
  local sorted = {}
  for i = 1, #list do
    sorted[i] = list[i]
  end
  table_sort(sorted)
  local n = #sorted
  if n == 0 then
    return nil
  elseif n % 2 == 1 then
    return sorted[(n + 1) / 2]
  end
  return (sorted[n / 2] + sorted[n / 2 + 1]) / 2
end

-- Every (row, payload) gets its own compiled loop, so LuaJIT records one trace per call site
-- instead of one polymorphic trace shared by every row. The loop returns how many calls
-- failed. Each result is stored where the loop's caller could reach it: a result only tested
-- for truth would let LuaJIT leave out (sink) the tables a Lua-built result is made of.
local LOOP_TEMPLATE = [[
local f, a, b, c = ...
local kept = {}
return function(n)
  local failed = 0
  for _ = 1, n do
    local result = %s
    if not result then
      failed = failed + 1
    end
    kept[1] = result
  end
  return failed
end
]]

local function make_loop(expr, name, f, a, b, c)
  local chunk = assert(load_source(string_format(LOOP_TEMPLATE, expr), "=" .. name))
  return chunk(f, a, b, c)
end

-- One batch of n calls: CPU seconds (os.clock, so time the scheduler gives to other processes
-- on a shared machine is not counted) and the number of failed calls. The heap is collected
-- first, so each batch pays for its own garbage and none of another row's.
local function time_batch(loop, n)
  collectgarbage("collect")
  local t0 = clock()
  local failed = loop(n)
  return clock() - t0, failed
end

-- Calls per batch so that one batch lasts about batch_s (doubling, which also warms up the
-- loop: LuaJIT has compiled it long before the last doubling).
local function calibrate(loop, batch_s)
  local n = 1
  while true do
    local elapsed = time_batch(loop, n)
    if elapsed >= batch_s or n >= 2 ^ 24 then
      return n
    end
    if elapsed < batch_s / 8 then
      n = n * 8
    else
      n = n * 2
    end
  end
end

-- The allocation counter (spec/bench/alloc_counter.c), built for Lua 5.1 to 5.4 only.
local has_counter, counter = pcall(require, "alloc_counter")
if not has_counter then
  counter = nil
end

-- Per call: how much the Lua heap grows (GC stopped, so nothing is freed in between) and, where
-- the counter exists, how many bytes were asked of the allocator.
local function bytes_per_call(loop, calls)
  local grown, asked, blocks = {}, {}, {}
  for i = 1, 3 do
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    local asked_before, blocks_before = counter and counter.bytes(), counter and counter.blocks()
    if counter then
      counter.count(true)
    end
    loop(calls)
    if counter then
      counter.count(false)
      asked[i] = (counter.bytes() - asked_before) / calls
      blocks[i] = (counter.blocks() - blocks_before) / calls
    end
    grown[i] = (collectgarbage("count") - before) * 1024 / calls
    collectgarbage("restart")
  end
  collectgarbage("collect")
  return median(grown), counter and median(asked), counter and median(blocks)
end

return {
  median = median,
  make_loop = make_loop,
  time_batch = time_batch,
  calibrate = calibrate,
  bytes_per_call = bytes_per_call,
}
