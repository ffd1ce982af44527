-- jicoo-webhook man: the manual page, in roff, made from the very text --help prints (the
-- command's and each subcommand's), so that the two cannot say different things.
local ipairs = ipairs
local string_gsub = string.gsub
local table_concat = table.concat

local _M = {}

-- Text as roff shows it verbatim: backslashes doubled, and a line starting with "." or "'"
-- (which roff takes for a request) guarded with \&.
local function verbatim(text)
  text = string_gsub(text, "\\", "\\e")
  text = string_gsub(text, "\n([.'])", "\n\\&%1")
  text = string_gsub(text, "^([.'])", "\\&%1")
  return text
end

-- The page for `parser` (the command's argparse parser).
function _M.page(parser, version)
  local lines = {
    '.TH JICOO-WEBHOOK 1 "" "jicoo-webhook ' .. version .. '" "User Commands"',
    ".SH NAME",
    "jicoo-webhook \\- check, sign, verify and send Jicoo webhook deliveries, replay them"
      .. " through handler scripts, and read a receiver's journal",
    ".SH SYNOPSIS",
    ".nf",
    verbatim(parser:get_usage()),
    ".fi",
    ".SH DESCRIPTION",
    ".nf",
    verbatim(parser:get_help()),
    ".fi",
    ".SH COMMANDS",
  }
  local function add(command, name)
    lines[#lines + 1] = ".SS " .. name
    lines[#lines + 1] = ".nf"
    lines[#lines + 1] = verbatim(command:get_help())
    lines[#lines + 1] = ".fi"
    for _, sub in ipairs(command._commands) do
      add(sub, name .. " " .. sub._name)
    end
  end
  for _, command in ipairs(parser._commands) do
    add(command, command._name)
  end
  lines[#lines + 1] = ".SH SEE ALSO"
  lines[#lines + 1] = "The project's docs/cli.md, and docs/ for the library."
  return table_concat(lines, "\n") .. "\n"
end

return _M
