-- The receive path for one delivery: size, signature, payload, its journal record (the claim,
-- exactly once), then the handlers it still needs, in registration order; and its answer
-- (answer.lua). Handlers always run here, in Lua, never from C; what they get as ctx is
-- context.lua's, handler scripts are scripts.lua's, the record is the journal's.
local setmetatable = setmetatable
local type = type
local pairs = pairs
local ipairs = ipairs
local tostring = tostring
local error = error
local select = select
local pcall = pcall
local xpcall = xpcall
local string_lower = string.lower
local string_match = string.match
local table_concat = table.concat
local math_random = math.random
local math_max = math.max
local math_ceil = math.ceil
-- The clock, in seconds to the millisecond (leases and retries are timed finer than a second):
-- nginx's cached one where there is one (compiled by LuaJIT, which cannot compile a C call such
-- as os.time: that cut the request's trace in pieces three times a delivery), else the core's.
local ngx = rawget(_G, "ngx")
local clock = ngx and ngx.now or require("jicoo.webhook.core").now
-- How long a handler ran: nginx's clock brought up to date first (it is cached per event-loop
-- turn, and a handler that does not yield would take no time on it). No function on the
-- request path ends in a tail call of a built-in (`return ngx.now()`, `return xpcall(...)`):
-- inside nginx LuaJIT gives up on a trace that begins at such a function and returns that way,
-- and after a few times leaves the function to the interpreter (spec/jit_trace.lua).
local elapsed_clock = ngx and function()
  ngx.update_time()
  local now = ngx.now()
  return now
end or clock
-- Where LuaJIT's traces of the request path end. A trace ends at a call of a C function the JIT
-- does not compile, and the next begins after it. Without such an end, a trace would run on
-- from the parse (a side exit in its builders: a delivery of another shape) or from the
-- dispatch through the journal, the handlers and the answer, more than LuaJIT takes in one
-- trace ("trace too long"); LuaJIT gives up after a few tries and leaves that path to the
-- interpreter. trace_end is such a call (gcinfo reads the collector's count, nothing else),
-- after the parse, and before and after the handlers, whose code is the user's and of any
-- length. Other runtimes have no JIT: a function that does nothing.
local trace_end = rawget(_G, "jit") and rawget(_G, "gcinfo") or function() end

local alarm = require "jicoo.webhook.router.alarm"
local answer = require "jicoo.webhook.router.answer"
local context = require "jicoo.webhook.router.context"
local engine = require "jicoo.webhook.payload"
local options = require "jicoo.webhook.router.options"
local scripts = require "jicoo.webhook.router.scripts"
local copy_delivery = require("jicoo.webhook.router.sandbox").copy_delivery
local ordering = require "jicoo.webhook.router.ordering"
local scheduler = require "jicoo.webhook.router.scheduler"

local _M = {}

local SIGNATURE_HEADER = "jicoo-webhook-signature"
local ANY = "*"

local FULL_RETRY_AFTER = 60   -- seconds a sender is asked to wait while the journal is full

local message_handler = scripts.message_handler

local Router = {}
Router.__index = Router

-- Looks a header up case-insensitively; a header sent several times stays the list that
-- ngx.req.get_headers gives, which verify joins as HTTP joins repeated fields.
local function header_value(headers, lower_name)
  local value = headers[lower_name]
  if value == nil then
    for name, v in pairs(headers) do
      if type(name) == "string" and string_lower(name) == lower_name then
        return v
      end
    end
  end
  return value
end

local function first_line(s)
  return string_match(s, "^[^\n]*")
end

---------------------------------------------------------------------------------------------
-- Construction (registration: routes.lua)

function _M.new(opts)
  local o = options.settings(opts)
  return setmetatable({
    context_meta = context.new_meta(o.log, o.http),
    verify = o.verify,
    secrets = o.secrets,
    verify_opts = { tolerance = o.tolerance, now = 0 },   -- accept's, its now set each time
    parse_opts = o.parse_opts,
    max_size = o.max_size,
    journal = o.journal,
    lease = o.lease,
    retry_delays = o.retry_delays,
    max_attempts = #o.retry_delays + 1,
    now_option = o.now,
    log = o.log,
    config = o.config,
    meter = o.metrics,    -- router/metrics.lua's counters
    ordered = o.ordered,  -- a booking's deliveries in order (ordering.lua)
    routes = {},          -- { event = name or "*", fn = handler, label = text }, in order
    error_handlers = {},
    dead_handlers = {},   -- { fn, label }: the dead-letter alarms (alarm.lua)
    label_counts = {},    -- label -> routes registered under it
  }, Router)
end

---------------------------------------------------------------------------------------------
-- handle

local function current_time(self)
  local now = self.now_option
  if now == nil then
    now = clock()
  elseif type(now) ~= "number" then
    now = now()
  end
  return now
end

local function report_error(self, message, ev, ctx)
  local handlers = self.error_handlers
  if #handlers == 0 then
    self.log("error", message)
    return
  end
  for _, fn in ipairs(handlers) do
    local ok, err = pcall(fn, message, ev, ctx)
    if not ok then
      self.log("error", "on_error handler failed: " .. tostring(err) .. " (reporting: " .. message .. ")")
    end
  end
end

local function acquire(self, key, now, new, take_failed)
  return self.journal:acquire(key, now, self.lease, new, take_failed)
end

-- The delay before the attempt after `attempts` failed ones, jittered, or nil when there is no
-- attempt left.
local function retry_delay(self, attempts)
  local delay = self.retry_delays[attempts]
  if delay == nil then
    return nil
  end
  return delay * (0.75 + 0.5 * math_random())
end

-- What a copy of a delivery that is already journaled is answered: 200 duplicate when the
-- journal will see it through (durable, or it is done or dead), else 503 with the seconds to
-- wait, so that the sender tries again.
local function answer_copy(self, ev, key, outcome, record, now)
  local state = outcome == "busy" and "running" or outcome == "waiting" and "failed" or outcome
  local res
  if (outcome == "busy" or outcome == "waiting") and not self.journal.durable then
    self.log("info", "delivery " .. key .. " is " .. state .. " in this process: answered 503")
    res = answer.in_progress(ev, math_max(1, math_ceil((record.lease_until or now) - now)))
    self.meter:delivery(ev.event, "busy")
  else
    self.log("info", "duplicate delivery " .. key .. " (" .. state .. "): handlers not run")
    res = answer.duplicate(ev, state)
    self.meter:delivery(ev.event, "duplicate")
  end
  res.key = key
  return res
end

local function new_context(self, key, body, headers, received_at, attempt)
  return context.new(self.context_meta, key, body, headers, received_at, attempt, self.config)
end

-- The checks before any handler runs: size, signature, payload, and the journal's record of
-- the delivery (its claim). Returns the delivery to dispatch, or nil and the final answer (413,
-- 401, 400, 500 when the journal fails, 200 for a duplicate, 503 for a copy of a delivery still
-- running in a journal that is not durable).
function Router:accept(body, headers)
  if type(body) ~= "string" then
    error("router:accept: body must be a string, got " .. type(body), 2)
  end
  if headers == nil then
    headers = {}
  elseif type(headers) ~= "table" then
    error("router:accept: headers must be a table, got " .. type(headers), 2)
  end

  if #body > self.max_size then
    self.meter:rejected("too_large")
    return nil, answer.too_large(#body, self.max_size)
  end

  local now = current_time(self)
  if self.verify then
    local header = header_value(headers, SIGNATURE_HEADER)
    local verify_opts = self.verify_opts
    verify_opts.now = now
    local ok, msg, code = engine.verify(body, header, self.secrets, verify_opts)
    if not ok then
      self.meter:rejected("bad_signature")
      return nil, answer.bad_signature(code, msg)
    end
  end

  local ev, msg, info = engine.parse(body, self.parse_opts)
  if not ev then
    self.meter:rejected("invalid_payload")
    return nil, answer.invalid_payload(msg, info)
  end

  trace_end()
  local key = ev:key()
  -- code: the failure's, or for new and taken whether the booking has no other record
  local outcome, record, code = acquire(self, key, now, {
    key = key, event = ev.event, uid = ev.object.uid, body = body, received_at = now,
  }, not self.journal.durable)
  if outcome == "new" or outcome == "taken" then
    if self.full then
      self.full = nil
      self.log("info", "journal: taking new deliveries again")
    end
    return { event = ev, key = key, record = record, alone = code,
      ctx = new_context(self, key, body, headers, record.received_at, record.attempts) }
  elseif outcome == nil and code == "full" then
    -- once while it lasts, not once a delivery
    if not self.full then
      self.full = true
      self.log("error", "journal: " .. tostring(record) .. "; new deliveries are answered 503"
        .. " (the sender retries) until some are done or dropped")
    end
    self.meter:delivery(ev.event, "busy")
    local res = answer.journal_full(ev, tostring(record), FULL_RETRY_AFTER)
    res.key = key
    return nil, res
  elseif outcome == nil then
    local message = "journal: cannot record " .. key .. ": " .. tostring(record)
    report_error(self, message, ev, new_context(self, key, body, headers, now, 0))
    self.meter:delivery(ev.event, "journal_failed")
    local res = answer.journal_failed(ev, message)
    res.key = key
    return nil, res
  end
  return nil, answer_copy(self, ev, key, outcome, record, now)
end

-- fn(ev, ctx) under xpcall with a traceback. LuaJIT and Lua 5.2+ pass xpcall's extra
-- arguments on, which keeps the hot path free of a closure per call; Lua 5.1 needs one.
local call_handler
if select(2, xpcall(function(x) return x end, message_handler, true)) then
  call_handler = function(fn, ev, ctx)
    local ok, result, message = xpcall(fn, message_handler, ev, ctx)
    return ok, result, message
  end
else
  call_handler = function(fn, ev, ctx)
    return xpcall(function() return fn(ev, ctx) end, message_handler)
  end
end

-- Writes changes to the delivery's record under its lease; a record that cannot be written is
-- logged (the delivery stays running, and is taken over once its lease runs out).
-- true and the journal's `alone` (journal/init.lua), false or nil as the journal's update.
local function record_outcome(self, delivery, changes, now)
  local ok, alone_or_err = self.journal:update(delivery.key, delivery.record.token, changes, now)
  if ok == false then
    self.log("warn", "journal: the lease on " .. delivery.key .. " ran out and another attempt"
      .. " took it over; this attempt's outcome is not recorded")
  elseif ok == nil then
    self.log("error", "journal: cannot record how " .. delivery.key .. " went (it runs again"
      .. " once its lease runs out): " .. tostring(alone_or_err))
  end
  return ok, ok and alone_or_err
end

-- Whether route still has to run for a delivery of event whose succeeded handlers are these.
local function is_pending(route, event, succeeded)
  return (route.event == event or route.event == ANY) and not succeeded[route.label]
end

-- The end of an attempt that failed: due again after the retry delay, or dead (logged once).
-- The budget counts the attempts since an operator's last retry (the journal's budget_from).
local function failure_changes(self, delivery, succeeded, errors, now)
  local attempts = delivery.record.attempts
  local tries = attempts - (delivery.record.budget_from or 0)
  local delay = tries < self.max_attempts and retry_delay(self, tries)
  local failures = {}
  for i, e in ipairs(errors) do
    failures[i] = { handler = e.handler, message = e.message }
  end
  if delay then
    return { state = "failed", handlers = succeeded, errors = failures, next_at = now + delay }
  end
  local parts = {}
  for i, e in ipairs(failures) do
    parts[i] = tostring(e.handler) .. ": " .. tostring(e.message)
  end
  self.meter:dead_letter(delivery.event.event)
  self.log("error", "dead letter " .. delivery.key .. " after " .. attempts .. " attempt(s): "
    .. table_concat(parts, "; ") .. " (jicoo-webhook deliveries show / retry)")
  return { state = "dead", handlers = succeeded, errors = failures, finished_at = now }
end

-- The last route a delivery of event still needs (0: none). Without a loop when that is the
-- event's last route (a first attempt): a loop of a few turns stops the traces through dispatch
-- inside nginx (spec/jit_trace.lua).
local function last_pending(routes, event, succeeded)
  local last_of = routes.last_of
  local last = last_of and math_max(last_of[event] or 0, last_of[ANY] or 0) or 0
  if last == 0 or not succeeded[routes[last].label] then
    return last
  end
  for i = last - 1, 1, -1 do
    if is_pending(routes[i], event, succeeded) then
      return i
    end
  end
  return 0
end

-- A delivery's event of its own for one handler: its body parsed again (the core makes the
-- tables faster than Lua copies them: 1.2 against 1.6 µs on LuaJIT, 2.3 against 8.4 on Lua
-- 5.4, for a booking), or a copy when there is no body.
local function own_event(self, delivery)
  local body = delivery.ctx.body
  local ev = type(body) == "string" and engine.parse(body, self.parse_opts)
  return ev or copy_delivery(delivery.event)
end

-- Runs route i's handler if the delivery still needs it, noting the outcome in ran and errors
-- (made at the first failure); a success before the last route is written to the journal before
-- the next one runs. Returns errors.
local function run_route(self, routes, delivery, i, last, ran, errors)
  local route = routes[i]
  local ev, ctx, succeeded = delivery.event, delivery.ctx, delivery.record.handlers
  if not is_pending(route, ev.event, succeeded) then
    return errors
  end
  ctx.handler = route.label
  local started = elapsed_clock()
  -- each handler but the last gets its own: what one changes, the next does not see
  local ok, err = scripts.outcome(call_handler(route.fn,
    i < last and own_event(self, delivery) or ev, ctx))
  self.meter:handler_run(route.label, ok, elapsed_clock() - started)
  if ok then
    ran[#ran + 1] = { handler = route.label, ok = true }
    succeeded[route.label] = true
    if i < last then
      local now = current_time(self)
      record_outcome(self, delivery, { handlers = succeeded, lease_until = now + self.lease }, now)
    end
  else
    local message = first_line(tostring(err))
    ran[#ran + 1] = { handler = route.label, ok = false, error = message }
    errors = errors or {}
    errors[#errors + 1] = { stage = "handler", handler = route.label, message = message }
    report_error(self, route.label .. " failed: " .. tostring(err), ev, ctx)
  end
  ctx.handler = nil
  return errors
end

-- Runs the handlers an accepted delivery still needs, in registration order; each success is
-- written to the journal before the next handler starts (the last one with the outcome), so a
-- handler that succeeded never runs again for this delivery. When one fails (it raises, or
-- returns nil, message or false), the others still run and the answer is 500: the delivery is
-- due again after its retry delay, or dead.
-- Runs the first waiting delivery of the booking that came after this one (it runs the next
-- when it ends): ordering.lua.
local function run_followers(self, delivery, state, now, alone)
  if alone then
    return   -- the journal holds no other record of the booking: none waits
  end
  local key, waiting = ordering.next_follower(self, delivery)
  if not key then
    return
  end
  if state == "dead" then
    self.log("warn", "dead letter " .. delivery.key .. " no longer holds back the " .. waiting
      .. " later delivery(ies) of its booking")
  end
  -- taken unless another worker or node has it already (busy), which goes on from there
  local outcome, record, alone_now = acquire(self, key, now, nil, true)
  if outcome == "taken" then
    local follower = scheduler.journaled_delivery(self, key, record, now)
    if follower then
      follower.alone = alone_now
      self.log("info", "delivery " .. key .. " runs now, after " .. delivery.key)
      self:dispatch(follower)
    end
  end
end

-- The handlers' outcome; and, with the booking's order kept, a delivery that ended done or dead
-- lets the next of its booking run.
function Router:dispatch(delivery)
  local ev, record = delivery.event, delivery.record
  -- (a delivery whose booking has no other record in the journal has nothing to wait for)
  if self.ordered and delivery.alone ~= true then
    local earlier = ordering.earlier_open(self, delivery)
    if earlier then
      local now = current_time(self)
      record_outcome(self, delivery, ordering.waiting_changes(delivery, earlier, now), now)
      self.log("info", "delivery " .. delivery.key .. " waits for " .. earlier.key
        .. ", an earlier one of its booking")
      local res = answer.waiting(ev)
      res.key, res.handlers, res.waiting = delivery.key, {}, true
      return res
    end
  end
  -- The record is this attempt's own (the lease's holder's): it grows as handlers succeed.
  local succeeded = record.handlers or {}
  record.handlers = succeeded
  local name = ev.event
  -- the handlers as they are now: a reload meanwhile swaps in a new list, not this one
  local routes = self.routes
  local last = last_pending(routes, name, succeeded)
  local ran, errors = {}, nil
  trace_end()
  for i = 1, last do
    errors = run_route(self, routes, delivery, i, last, ran, errors)
  end
  trace_end()
  if ev.event ~= name then
    ev.event = name   -- the last handler had the delivery itself: the answer names what came
  end

  local now = current_time(self)
  local changes, res
  if errors then
    changes = failure_changes(self, delivery, succeeded, errors, now)
    res = answer.handler_failed(ev, errors)
  else
    changes = { state = "done", handlers = succeeded, finished_at = now }
    local had = record.errors
    if had == nil or had[1] ~= nil then   -- an earlier attempt's errors go (a first one has none)
      changes.errors = {}
    end
    res = answer.handled(ev, #ran)
  end
  local state = changes.state
  local _, alone = record_outcome(self, delivery, changes, now)
  if state == "dead" and #self.dead_handlers > 0 then
    alarm.raise(self, alarm.summary(delivery.key, record, errors, now), delivery.ctx)
  end
  res.key = delivery.key
  res.handlers = ran
  if self.ordered and state ~= "failed" then
    run_followers(self, delivery, state, now, alone)
  end
  return res
end

-- Gives an accepted delivery back without running it (e.g. it could not be scheduled): due
-- again at once, its attempt not counted.
function Router:release(delivery)
  local now = current_time(self)
  record_outcome(self, delivery, { state = "failed", next_at = now,
    attempts = delivery.record.attempts - 1 }, now)
end

-- The whole receive path, accept then dispatch: returns
-- { status, body, event, errors, key, handlers, duplicate }.
function Router:handle(body, headers)
  local delivery, res = self:accept(body, headers)
  if not delivery then
    return res
  end
  res = self:dispatch(delivery)
  self.meter:delivery(delivery.event.event, res.waiting and "waiting"
    or res.status == 200 and "handled" or "handler_failed")
  return res
end

-- The scheduler's pass (scheduler.lua), and the helpers it shares with the receive path.
Router.run_due = scheduler.run_due
-- A delivery this program built (jicoo-webhook reconcile), past the signature check: reconcile.lua.
Router.deliver = require("jicoo.webhook.router.reconcile").deliver
-- Registration (routes.lua): router:on, on_error, on_dead, load.
local routes = require "jicoo.webhook.router.routes"
Router.on, Router.on_error, Router.on_dead, Router.load, Router.reload = routes.on,
  routes.on_error, routes.on_dead, routes.load, routes.reload
-- What it tells its operators (status.lua): router:metrics() and router:health().
local status = require "jicoo.webhook.router.status"
Router.metrics, Router.health = status.metrics, status.health
_M.internals = { current_time = current_time, acquire = acquire,
  record_outcome = record_outcome, new_context = new_context, elapsed_clock = elapsed_clock }

return _M
