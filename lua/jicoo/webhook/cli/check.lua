-- jicoo-webhook check: validates saved deliveries (files, folders of .json files, or standard
-- input), each error with its path; a summary line, or JSON lines with --json.
local ipairs = ipairs
local pairs = pairs
local require = require
local string_sub = string.sub
local table_sort = table.sort

local cli_io = require "jicoo.webhook.cli.io"

local out, read = cli_io.out, cli_io.read
local EXIT_OK, EXIT_FAILURE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE

local _M = {}

local webhook = require "jicoo.webhook"

-- The .json files a list of files and folders names, each folder's in name order.
local function expand_files(paths)
  local core = require "jicoo.webhook.core"
  local files = {}
  for _, path in ipairs(paths) do
    local listing = path ~= "-" and core.file_list(path)
    if listing then
      local names = {}
      for name in pairs(listing) do
        if string_sub(name, -5) == ".json" then
          names[#names + 1] = name
        end
      end
      table_sort(names)
      local prefix = string_sub(path, -1) == "/" and path or path .. "/"
      for _, name in ipairs(names) do
        files[#files + 1] = prefix .. name
      end
    else
      files[#files + 1] = path
    end
  end
  return files
end

-- The parse options --strict and the limits give.
local function parse_options(args)
  local opts = { level = args.strict and "strict" or "lenient" }
  for name in pairs(webhook.limits) do
    opts[name] = args[name]
  end
  return opts
end

function _M.run(args)
  local opts = parse_options(args)
  local results, ok, invalid = {}, 0, 0
  for _, path in ipairs(expand_files(args.files)) do
    local body, _, why = read(path)
    local result = { file = path }
    if not body then
      result.ok, result.code, result.message = false, "unreadable", why
    else
      local ev, msg, info = webhook.parse(body, opts)
      if ev then
        result.ok, result.event, result.uid = true, ev.event, ev.object.uid
        result.known = ev:is_known()
      else
        result.ok, result.code, result.path, result.offset, result.message = false, info.code,
          info.path, info.offset, msg
      end
    end
    if result.ok then
      ok = ok + 1
    else
      invalid = invalid + 1
    end
    results[#results + 1] = result
    if not args.json then
      if result.ok then
        out(path, ": ok: ", result.event, " ", result.uid,
          result.known and "" or " (unknown event, accepted at the lenient level)")
      elseif result.code == "unreadable" then
        out(path, ": unreadable: ", result.message)
      else
        -- The parser's message names the code, the pointer (or the root) and the offset.
        out(path, ": invalid: ", result.message)
      end
    end
  end
  if args.json then
    out(require("jicoo.webhook.payload.json").encode({ files = results, ok = ok, invalid = invalid }))
  else
    out(ok, " ok, ", invalid, " invalid")
  end
  return invalid == 0 and EXIT_OK or EXIT_FAILURE
end

return _M
