-- The benchmark's floor on LuaJIT (spec/bench/floor.c is Lua 5.x's): what building parse's
-- result costs when nothing has to be read, checked or decoded. compile(value) writes the source
-- of one function that builds the same tree of tables again on each call, as LuaJIT builds
-- tables at best: table constructors with constant keys (a template copied, no hashing), each
-- string value copied from bytes with ffi.string, the same metatables. The benchmark checks the
-- copy equal to the original before timing it.
local ffi = require "ffi"

local format = string.format
local concat = table.concat

local _M = {}

function _M.compile(value)
  local bytes, used = {}, 0
  local metatables, metatable_index = {}, {}

  local function source(v)
    local kind = type(v)
    if kind == "string" then
      bytes[#bytes + 1] = v
      used = used + #v
      return format("str(base + %d, %d)", used - #v, #v)
    elseif kind == "number" or kind == "boolean" then
      return tostring(v)
    elseif kind ~= "table" then
      error("floor: cannot record a " .. kind)
    end
    local parts, n = {}, #v
    for i = 1, n do
      parts[#parts + 1] = source(v[i])
    end
    local keys = {}
    for k in pairs(v) do
      if type(k) == "string" then
        keys[#keys + 1] = k
      elseif type(k) ~= "number" or k > n then
        error("floor: a key that is neither a string nor an item")
      end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = format("[%q] = %s", k, source(v[k]))
    end
    local constructor = "{" .. concat(parts, ", ") .. "}"
    local mt = getmetatable(v)
    if mt == nil then
      return constructor
    end
    if not metatable_index[mt] then
      metatables[#metatables + 1] = mt
      metatable_index[mt] = #metatables
    end
    return format("setmetatable(%s, M[%d])", constructor, metatable_index[mt])
  end

  local body = source(value)
  local text = "local str, setmetatable, M, base = ...\nreturn function()\n  return " .. body
    .. "\nend\n"
  local all = concat(bytes)
  local buffer = ffi.new("char[?]", #all + 1)
  ffi.copy(buffer, all, #all)
  -- base is the array itself: arithmetic on it gives a pointer, and the builder holding it as
  -- an upvalue keeps it alive
  return assert(loadstring(text, "=floor"))(ffi.string, setmetatable, metatables, buffer)
end

return _M
