-- The guest cancelled: free the slot and record the guest's reason.
-- luacheck: read globals SCRIPT_DIR
local slots_file = dofile(SCRIPT_DIR .. "_slots.lua")

return function(ev, ctx)
  slots_file.cancel(ev, ctx)
end
