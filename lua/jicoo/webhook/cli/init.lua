-- The jicoo-webhook command: check, sign, verify and send deliveries, replay them through handler
-- scripts, print example ones, write an nginx setup, and read the journal a receiver keeps.
-- `main(args)` returns the exit status: 0 success, 1 failure, 2 usage error. The arguments are
-- parser.lua's; each command is a module of its own beside this one.
local type = type
local error = error
local pcall = pcall
local require = require
local io_stdout = io.stdout
local os_time = os.time

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out = cli_io.out, cli_io.err
local EXIT_OK, EXIT_FAILURE, EXIT_USAGE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE, cli_io.EXIT_USAGE

local _M = {}

local VERSION = require "jicoo.webhook.version"

local function run_example(args)
  local example = require "jicoo.webhook.cli.example"
  io_stdout:write(example.delivery(args.event, args.now and os_time() or nil))
  return EXIT_OK
end

local function run_send(args)
  local secret, secret_err = require("jicoo.webhook.cli.signature").secret_of(args)
  if not secret then
    return EXIT_USAGE, secret_err
  end
  return require("jicoo.webhook.cli.send").run(args, secret)
end

-- Each command's runner: function(args) -> status [, usage message].
local COMMANDS = {
  check = function(args) return require("jicoo.webhook.cli.check").run(args) end,
  sign = function(args) return require("jicoo.webhook.cli.signature").sign(args) end,
  verify = function(args) return require("jicoo.webhook.cli.signature").verify(args) end,
  send = run_send,
  run = function(args) return require("jicoo.webhook.cli.run").run(args) end,
  ["check-handlers"] = function(args) return require("jicoo.webhook.cli.handlers").run(args) end,
  example = run_example,
  deliveries = function(args) return require("jicoo.webhook.cli.deliveries").run(args) end,
  nginx = function(args) return require("jicoo.webhook.cli.nginx").run(args) end,
  reconcile = function(args) return require("jicoo.webhook.cli.reconcile").run(args) end,
  annotations = function() return require("jicoo.webhook.cli.editors").run() end,
}

-- Runs the command line `args` (a list of strings, like the global `arg`); returns the exit
-- status.
function _M.main(args)
  local has_argparse, argparse = pcall(require, "argparse")
  if not has_argparse then
    err_out("jicoo-webhook needs the Lua module argparse: on Debian `apt-get install"
      .. " lua-argparse`, elsewhere `luarocks install argparse`")
    return EXIT_USAGE
  end
  local parser_module = require "jicoo.webhook.cli.parser"
  local parser = parser_module.build(argparse)
  -- Usage errors come back here (argparse would exit with status 1 itself).
  parser.error = function(command, message)
    error({ usage = command:get_usage(), message = message }, 0)
  end

  local ok, parsed = pcall(parser.parse, parser, parser_module.join_negative_seconds(args or {}))
  if not ok then
    if type(parsed) == "table" and parsed.usage then
      err_out(parsed.usage, "\n\nError: ", parsed.message)
      return EXIT_USAGE
    end
    error(parsed, 0)
  end

  local status, usage_err
  if parsed.version then
    out("jicoo-webhook ", VERSION)
    return EXIT_OK
  elseif parsed.command == nil then
    err_out(parser:get_usage(), "\n\nError: a command is required")
    return EXIT_USAGE
  elseif parsed.command == "completion" then
    io_stdout:write(parser["get_" .. parsed.shell .. "_complete"](parser))
    return EXIT_OK
  elseif parsed.command == "man" then
    io_stdout:write(require("jicoo.webhook.cli.man").page(parser, VERSION))
    return EXIT_OK
  else
    status, usage_err = COMMANDS[parsed.command](parsed)
  end
  if status == EXIT_USAGE then
    err_out("jicoo-webhook ", parsed.command, ": ", usage_err)
  end
  io_stdout:flush()
  return status
end

_M.EXIT_OK, _M.EXIT_FAILURE, _M.EXIT_USAGE = EXIT_OK, EXIT_FAILURE, EXIT_USAGE

return _M
