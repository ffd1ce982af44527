-- Runs the jicoo-webhook command as a subprocess with the interpreter running the specs
-- (shared by the cli_*_spec.lua files, examples_spec and the other specs that run the command),
-- and names the fixtures it is run on.
local support = require "support"

local runner = {}

-- $JICOO_LUA, else $JICOO_RUNTIME (set by the CMake test, e.g. "luajit"), else the
-- interpreter running busted (the lowest index of the global `arg`).
function runner.interpreter()
  local configured = os.getenv("JICOO_LUA") or os.getenv("JICOO_RUNTIME")
  if configured and configured ~= "" then
    return configured
  end
  local lowest = 0
  while arg and arg[lowest - 1] do
    lowest = lowest - 1
  end
  return arg and arg[lowest] or "lua"
end

local spec_dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec"
runner.root = spec_dir .. "/.."
runner.launcher = runner.root .. "/lua/bin/jicoo-webhook"

-- Runs `jicoo-webhook <args>` (args already shell-quoted) with optional environment
-- assignments and standard input file; returns the exit status, stdout and stderr.
function runner.run(args, env, stdin)
  local out_file, err_file = os.tmpname(), os.tmpname()
  local command = (env or "") .. " " .. support.quote(runner.interpreter()) .. " "
    .. support.quote(runner.launcher) .. " " .. args .. " >" .. out_file .. " 2>" .. err_file
  if stdin then
    command = command .. " <" .. support.quote(stdin)
  end
  local pipe = assert(io.popen(command .. "; echo $?"))
  local code = tonumber(pipe:read("*a"):match("(%d+)%s*$"))
  pipe:close()
  local stdout, stderr = support.read(out_file), support.read(err_file)
  os.remove(out_file)
  os.remove(err_file)
  return code, stdout, stderr
end

-- The path of a fixture: spec/fixtures/<folder>/<name>.
function runner.fixture_path(folder, name)
  return support.fixtures .. "/" .. folder .. "/" .. name
end

-- A fresh empty folder; remove it with runner.remove_dir.
function runner.temp_dir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(support.run("mkdir -p " .. support.quote(dir)))
  return dir
end

function runner.remove_dir(dir)
  support.run("rm -rf " .. support.quote(dir))
end

return runner
