-- The host cancelled: free the slot, record the reason, and flag the guest for a follow-up
-- (an apology and a new link), which the team works through from cancellations.jsonl.
-- luacheck: read globals SCRIPT_DIR
local slots_file = dofile(SCRIPT_DIR .. "_slots.lua")

return function(ev, ctx)
  slots_file.cancel(ev, ctx, { follow_up = "apologise and offer a new time" })
end
