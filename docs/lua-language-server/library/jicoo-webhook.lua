---@meta jicoo.webhook
-- The Lua Language Server's annotations of jicoo.webhook that are written by hand: the module's
-- functions, the router, ctx, the journal and the claim stores, as docs/api.md describes them.
-- The typed tables are in jicoo-webhook-types.lua, made from the C core's schema. Part of the
-- addon in this folder (docs/handlers.md, "Editors").
-- luacheck: ignore

---What a failure says (`nil, msg, info` from parse, decode and construct).
---@class jicoo.webhook.ErrorInfo
---@field code string syntax, encoding, limit, missing, type, format, enum, duplicate,
---unknown_key, or a signature's code
---@field path? string the RFC 6901 pointer of the offending value ("" for the whole document)
---@field offset? integer the 0-based byte offset of the offending byte

---level, unknown_keys, null and the limits (max_size, ...); tolerance and now for verify
---@alias jicoo.webhook.Options table<string, any>

---@class jicoo.webhook
---@field null lightuserdata what a JSON null becomes with opts.null (equal to cjson.null)
---@field EVENTS string[] the known event names
---@field limits table<string, integer> the default limits (a copy)
---@field _VERSION string
local webhook = {}

---Parses and validates one delivery body into typed tables.
---@param body string the raw bytes of the POST
---@param opts? jicoo.webhook.Options
---@return jicoo.webhook.Event? ev
---@return string? msg
---@return jicoo.webhook.ErrorInfo? info
function webhook.parse(body, opts) end

---Any JSON value to a plain Lua value, strictly.
---@param s string
---@param opts? jicoo.webhook.Options
---@return any value
---@return string? msg
---@return jicoo.webhook.ErrorInfo? info
function webhook.decode(s, opts) end

---An RFC 3339 date-time to Unix seconds.
---@param s string
---@return number? secs
---@return string? msg
function webhook.time(s) end

---Whether header signs body under one of the secrets.
---@param body string
---@param header string|string[]|nil the Jicoo-Webhook-Signature value
---@param secrets string|string[]
---@param opts? jicoo.webhook.Options tolerance, now
---@return boolean ok
---@return string? msg
---@return string? code missing_header, malformed_header, no_signature, mismatch, expired
function webhook.verify(body, header, secrets, opts) end

---The header Jicoo would send for body.
---@param secret string
---@param body string
---@param t? integer the signing time (default: now)
---@return string header
function webhook.sign(secret, body, t) end

---Verifies, then parses what verified.
---@param body string
---@param header string|string[]|nil
---@param secrets string|string[]
---@param opts? jicoo.webhook.Options
---@return jicoo.webhook.Event? ev
---@return string? msg
---@return jicoo.webhook.ErrorInfo? info
function webhook.construct(body, header, secrets, opts) end

---secrets, verify, tolerance, journal, store, ttl, lease, retry_delays, now, log, config, and
---parse's options (docs/api.md)
---@param opts? table
---@return jicoo.webhook.Router
function webhook.router(opts) end

---What router:handle returns.
---@class jicoo.webhook.Result
---@field status integer the HTTP status to answer
---@field body string a short JSON document for the answer
---@field event? jicoo.webhook.Event
---@field key? string
---@field errors table[] { stage, code, path, offset, handler, message }
---@field handlers? table[] { handler = label, ok = boolean, error }
---@field duplicate? boolean

---@class jicoo.webhook.Router
---@field max_size integer
local Router = {}

---@param event string an event name, or "*" for every event
---@param fn jicoo.webhook.Handler
---@return jicoo.webhook.Router
function Router:on(event, fn) end

---@param fn fun(message: string, ev: jicoo.webhook.Event?, ctx: jicoo.webhook.Context?)
---@return jicoo.webhook.Router
function Router:on_error(fn) end

---Loads dir/<event>.lua and dir/any.lua.
---@param dir string
---@param opts? { env: table<string, any>? } env: globals added to every script's world
---@return integer? registered
---@return string? msg
---@return table[]? failures { file, message }
function Router:load(dir, opts) end

---@param body string
---@param headers? table<string, string|string[]>
---@return jicoo.webhook.Result
function Router:handle(body, headers) end

---@param body string
---@param headers? table<string, string|string[]>
---@return table? delivery
---@return jicoo.webhook.Result? answer
function Router:accept(body, headers) end

---@param delivery table
---@return jicoo.webhook.Result
function Router:dispatch(delivery) end

---@param delivery table
function Router:release(delivery) end

---Runs every delivery the journal has due now.
---@return integer ran
---@return jicoo.webhook.Result[] results
function Router:run_due() end

---Runs a delivery this program built (jicoo-webhook reconcile), past the signature check, under
---the key "reconcile/" .. ev:key(); its handlers get ctx.source == "reconcile".
---@param body string
---@return jicoo.webhook.Result
function Router:deliver(body) end

---A handler: what router:on takes and a handler script returns.
---@alias jicoo.webhook.Handler fun(ev: jicoo.webhook.Event, ctx: jicoo.webhook.Context)

---In a handler script: the script's folder, ending in "/" (for dofile of shared files).
---@type string
SCRIPT_DIR = nil

---What a handler gets with each delivery.
---@class jicoo.webhook.Context
---@field headers table<string, string|string[]> the request's headers (empty on a retry)
---@field body string the request's body, its raw bytes
---@field received_at number Unix seconds when the delivery first arrived
---@field key string the delivery's idempotency key
---@field attempt integer 1, then 2, ... on retries
---@field source "webhook"|"reconcile" received and signed, or built by jicoo-webhook reconcile
---@field config table the router's config
---@field handler? string the running handler's label
---@field log jicoo.webhook.Logger
---HTTP out, in nginx and plain Lua (docs/handlers.md, "ctx.http")
---@field http fun(request: jicoo.webhook.HttpRequest): jicoo.webhook.HttpResponse?, string?
local Context = {}

---ctx.config[name], else the environment variable env_name, else default.
---@param name string
---@param env_name? string
---@param default? any
---@return any
function Context:setting(name, env_name, default) end

---ctx.log("fmt", ...) logs at info; ctx.log.debug/info/warn/error pick the level.
---@class jicoo.webhook.Logger
---@field debug fun(fmt: any, ...: any)
---@field info fun(fmt: any, ...: any)
---@field warn fun(fmt: any, ...: any)
---@field error fun(fmt: any, ...: any)
---@overload fun(fmt: any, ...: any)

---@class jicoo.webhook.HttpRequest
---@field method? string default "GET"
---@field url string http:// or https://
---@field headers? table<string, string>
---@field body? string
---@field timeout? number ms for the connect, the send and each read (default 10000)
---@field max_body? integer the longest answer accepted, bytes (default 1 MiB)
---@field verify? boolean false: no TLS certificate check
---@field ca_file? string trusted CAs outside nginx

---@class jicoo.webhook.HttpResponse
---@field status integer
---@field reason string
---@field headers table<string, string> lower-case names
---@field body string

---The client of Jicoo's REST API (require "jicoo.api").client(opts); docs/jicoo-api.md.
---@class jicoo.api.Client
local Client = {}
---@return table? booking
---@return string? msg
---@return table? info { status, errors, body, attempts }
function Client:booking(uid) end
---@return table[]? contacts
---@return string? msg
---@return table? info
function Client:booking_contacts(uid) end
---@return table? booking
---@return string? msg
---@return table? info
function Client:cancel(uid, reason) end
---@param to { startedAt: string, timeZone: string }
---@return table? booking
---@return string? msg
---@return table? info
function Client:reschedule(uid, to) end
---@return table? booking
---@return string? msg
---@return table? info
function Client:update(uid, fields) end
---Pages of bookings: for items, page in jicoo:bookings(query) do ... end
---@return fun(): table[]|false|nil, table|string|nil, table?
function Client:bookings(query) end
---@return fun(): table[]|false|nil, table|string|nil, table?
function Client:event_types(query) end
---@return table? event_type
---@return string? msg
---@return table? info
function Client:event_type(uid) end
---@return fun(): table[]|false|nil, table|string|nil, table?
function Client:event_type_hosts(event_type_uid, query) end
---@param period { periodStart: string, periodEnd: string }
---@return table[]? slots
---@return string? msg
---@return table? info
function Client:available_schedules(uid, period) end
---@return any data
---@return string|nil msg
---@return table? answer_or_info
function Client:request(method, path, query, body) end

---A journal of deliveries (require "jicoo.webhook.journal": memory, files, redis).
---@class jicoo.webhook.Journal
---@field durable boolean
local Journal = {}
---@return string? outcome new, taken, busy, waiting, done, dead, absent
---@return table|string|nil record_or_err
function Journal:acquire(key, now, lease, new, take_failed) end
---@return boolean? ok
---@return string? err
function Journal:update(key, token, changes, now) end
---@return string[]? keys
---@return table|string|nil problems_or_err
function Journal:due(now, limit) end
---@return table? record
---@return string? err
function Journal:get(key) end
---@return table[]? records
---@return string? err
function Journal:list(state) end
---@return table|false|nil record
---@return string? why
function Journal:rearm(key, now) end
---@return boolean? ok
---@return string? err
function Journal:remove(key) end

---A claim store (require "jicoo.webhook.journal.claims": memory, shdict, redis).
---@class jicoo.webhook.Store
local Store = {}
---@return boolean? claimed
---@return string? err
function Store:add(key, ttl) end
---@return boolean? ok
---@return string? err
function Store:delete(key) end

return webhook
