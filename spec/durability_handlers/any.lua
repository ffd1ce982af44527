-- The durability specs' first handler: one line "<key>\t<worker pid>" in <output_dir>/any.log per
-- run (one write on an O_APPEND file). It must run once per delivery, whatever happens after it.
-- luacheck: read globals ngx
return function(_, ctx)
  local file = assert(io.open(ctx.config.output_dir .. "/any.log", "a"))
  assert(file:write(ctx.key .. "\t" .. ngx.worker.pid() .. "\n"))
  assert(file:close())
end
