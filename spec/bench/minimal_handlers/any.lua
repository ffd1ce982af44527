-- The benchmark's minimal automation: one handler that does nothing, so that the receiver's
-- own cost shows without the example's counters and log line.
return function() end
