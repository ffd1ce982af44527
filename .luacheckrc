std = "max"
files["spec/"] = { std = "+busted" }
files["lua/jicoo/webhook/openresty.lua"] = { std = "+ngx_lua" }
files["examples/openresty/"] = { std = "+ngx_lua" }
max_line_length = 110
