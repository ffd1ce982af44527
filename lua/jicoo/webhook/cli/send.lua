-- jicoo-webhook send: sign each file now and POST it as Jicoo would (its body's bytes exactly,
-- Content-Type application/json, Jicoo-Webhook-Signature), printing each answer; the way to test
-- a deployed endpoint. HTTP through the project's client (http.lua), TLS verified.
local ipairs = ipairs
local tostring = tostring
local os_time = os.time

local cli_io = require "jicoo.webhook.cli.io"

local out, err_out, read = cli_io.out, cli_io.err, cli_io.read
local printable = cli_io.printable
local EXIT_OK, EXIT_FAILURE = cli_io.EXIT_OK, cli_io.EXIT_FAILURE

local _M = {}

-- An answer as one line: the body as it came (control bytes escaped), but an HTML page (a
-- server or a proxy that is not the receiver) by its type, size and title.
local function answer_line(res, url)
  local content_type = res.headers and res.headers["content-type"] or ""
  local body = res.body or ""
  if not (content_type:find("html", 1, true) or body:find("^%s*<")) then
    return printable(body)
  end
  local title = body:match("<[Tt][Ii][Tt][Ll][Ee]>([^<]*)</")
  return "(" .. (content_type ~= "" and printable(content_type) or "no Content-Type") .. ", "
    .. #body .. " bytes" .. (title and ': "' .. printable(title) .. '"' or "")
    .. ": not the receiver's answer; is " .. printable(url) .. " its location?)"
end

-- Sends args.files to args.url signed with secret; the exit status: 1 when any answer is not a
-- 2xx or any request failed.
function _M.run(args, secret)
  local webhook = require "jicoo.webhook"
  local http = require "jicoo.net.http"
  local status = EXIT_OK
  for _, path in ipairs(args.files) do
    local body, read_err = read(path)
    if not body then
      err_out(read_err)
      status = EXIT_FAILURE
    else
      local res, err = http.request({
        method = "POST",
        url = args.url,
        headers = {
          ["Content-Type"] = "application/json",
          ["Jicoo-Webhook-Signature"] = webhook.sign(secret, body, os_time()),
        },
        body = body,
        timeout = args.timeout,
        ca_file = args.ca_file,
      })
      if not res then
        out(path, " -> failed: ", tostring(err))
        status = EXIT_FAILURE
      else
        out(path, " -> ", res.status, " ", answer_line(res, args.url))
        if res.status < 200 or res.status > 299 then
          status = EXIT_FAILURE
        end
      end
    end
  end
  return status
end

return _M
