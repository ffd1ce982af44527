std = "max"
max_line_length = 110
exclude_files = { "build*/**" }
-- Specs hold tables of cases, one case a line.
files["spec/"] = { std = "+busted", max_line_length = 140 }
files["lua/jicoo/webhook/nginx/"] = { std = "+ngx_lua" }
files["examples/openresty/"] = { std = "+ngx_lua" }
-- Code that runs inside the test and benchmark nginx.
files["spec/nginx_handlers/"] = { std = "+busted+ngx_lua" }
files["spec/bench/nginx_endpoints.lua"] = { std = "+ngx_lua" }
files["spec/standin.lua"] = { std = "+ngx_lua" }
-- A LuaRocks configuration sets the globals LuaRocks reads.
files["rockspec/luajit.lua"] = { allow_defined_top = true, ignore = { "131" } }
