-- Counts deliveries per event in the lua_shared_dict jicoo_stats (shared by every worker,
-- no file, no lock): GET /jicoo/stats shows them. An nginx-only automation.
return function(ev, ctx)
  local stats = ngx.shared.jicoo_stats
  local count = stats:incr(ev.event, 1, 0)
  stats:incr("all", 1, 0)
  ctx.log("%s #%d", ev.event, count or 0)
end
