-- The documentation stays true to the code: every public function and value appears in
-- docs/api.md in the form a use of it is written, README.md links every page of docs/, and
-- every relative link in README.md and docs/*.md points at a file that exists (and, with an
-- anchor, at a heading of that file).
local webhook = require "jicoo.webhook"
local journal = require "jicoo.webhook.journal"
local store = require "jicoo.webhook.store"
local types = require "jicoo.webhook.payload.types"
local core = require "jicoo.webhook.core"
local support = require "support"

local ROOT = support.root
local API = "docs/api.md"
local api = support.read(ROOT .. "/" .. API)

-- (what the reference calls it, how the reference writes a use of it) for every exported
-- function.
local function exported(module_name, module, prefix)
  local names = {}
  for name, value in pairs(module) do
    if type(value) == "function" and not name:match("^_") then
      names[#names + 1] = { module_name .. "." .. name, prefix .. name .. "(" }
    end
  end
  return names
end

local documented = {}
local function add(list)
  for _, entry in ipairs(list) do
    documented[#documented + 1] = entry
  end
end

add(exported("webhook", webhook, "webhook."))
for name, value in pairs(webhook) do
  if type(value) ~= "function" then
    add({ { "webhook." .. name, "webhook." .. name } })
  end
end
-- store/init.lua and journal/init.lua also export helpers the library's own backends share
-- (claim_ttl, guarded, decide, ...); the public names are these.
for _, name in ipairs({ "memory", "shdict", "redis", "is_store" }) do
  assert(type(store[name]) == "function", "store." .. name)
  add({ { "store." .. name, "store." .. name .. "(" } })
end
for _, name in ipairs({ "memory", "files", "redis", "is_journal" }) do
  assert(type(journal[name]) == "function", "journal." .. name)
  add({ { "journal." .. name, "journal." .. name .. "(" } })
end
-- The interfaces a journal or a claim store of one's own implements.
for _, name in ipairs(journal.METHODS) do
  add({ { "journal:" .. name, "journal:" .. name .. "(" } })
end
for _, name in ipairs({ "add", "delete" }) do
  add({ { "store:" .. name, "store:" .. name .. "(" } })
end
-- jicoo.webhook.openresty and jicoo.webhook.receiver need ngx to load, so their functions are
-- listed here.
for _, name in ipairs({ "serve", "router", "log", "schedule" }) do
  add({ { "openresty." .. name, "openresty." .. name .. "(" } })
end
for _, name in ipairs({ "configure", "init_worker", "serve", "stats" }) do
  add({ { "receiver." .. name, "receiver." .. name .. "(" } })
end
local router = webhook.router({ verify = false })
add(exported("router", getmetatable(router).__index, "router:"))
add({ { "router.max_size", "router.max_size" } })
for type_name, methods in pairs(types.methods) do
  for name in pairs(methods) do
    documented[#documented + 1] = { type_name .. ":" .. name, ":" .. name .. "(" }
  end
end

---------------------------------------------------------------------------------------------
-- Links

-- The Markdown pages: README.md and docs/*.md, as paths from the root.
local function pages()
  local list = { "README.md" }
  local names = {}
  for name in pairs(assert(core.file_list(ROOT .. "/docs"))) do
    if name:match("%.md$") then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    list[#list + 1] = "docs/" .. name
  end
  return list
end

-- The text outside fenced code blocks and inline code, where a link is a link.
local function prose(text)
  local lines, fenced = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") then
      fenced = not fenced
    elseif not fenced then
      lines[#lines + 1] = (line:gsub("`[^`]*`", ""))
    end
  end
  return table.concat(lines, "\n")
end

-- The anchors of a page's headings, as GitHub makes them: lower case, punctuation but "-" and
-- "_" removed, spaces as "-", "-1", "-2", ... after a repeated one.
local function anchors(text)
  local set, seen = {}, {}
  for line in prose(text):gmatch("[^\n]+") do
    local title = line:match("^#+%s+(.-)%s*$")
    if title then
      local slug = title:lower():gsub("[^%w%s_%-]", ""):gsub("%s", "-")
      if seen[slug] then
        seen[slug] = seen[slug] + 1
        slug = slug .. "-" .. seen[slug]
      else
        seen[slug] = 0
      end
      set[slug] = true
    end
  end
  return set
end

-- A path relative to the page's folder, "." and ".." resolved; nil when it leaves the root.
local function resolve(page, target)
  local parts = {}
  for part in (page:match("^(.*)/") or ""):gmatch("[^/]+") do
    parts[#parts + 1] = part
  end
  for part in target:gmatch("[^/]+") do
    if part == ".." then
      if #parts == 0 then
        return nil
      end
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return table.concat(parts, "/")
end

local function exists(path)
  local file = io.open(ROOT .. "/" .. path, "rb")
  if file then
    file:close()
    return true
  end
  return core.file_list(ROOT .. "/" .. path) ~= nil   -- a folder
end

local function is_page(path)
  return path:match("%.md$") ~= nil
end

-- Every relative link of every page: { page, target, file (from the root), anchor }.
local links = {}
local texts = {}
for _, page in ipairs(pages()) do
  texts[page] = support.read(ROOT .. "/" .. page)
  for target in prose(texts[page]):gmatch("%]%(([^)%s]+)%)") do
    if not target:match("^%a[%w+.-]*:") then   -- http:, https:, mailto:
      local file, anchor = target:match("^([^#]*)#?(.*)$")
      links[#links + 1] = { page = page, target = target,
        file = file == "" and page or resolve(page, file), anchor = anchor ~= "" and anchor or nil }
    end
  end
end

---------------------------------------------------------------------------------------------

describe("docs/api.md", function()
  it("finds something to check", function()
    assert.is_true(#documented > 40)
  end)
  for _, entry in ipairs(documented) do
    it("documents " .. entry[1], function()
      assert.is_truthy(api:find(entry[2], 1, true), entry[2] .. " is not in " .. API)
    end)
  end
end)

describe("README.md", function()
  for _, page in ipairs(pages()) do
    if page ~= "README.md" then
      it("links " .. page, function()
        assert.is_truthy(texts["README.md"]:find("](" .. page .. ")", 1, true),
          "README.md does not link " .. page)
      end)
    end
  end
end)

describe("links in README.md and docs/", function()
  it("finds links to check", function()
    assert.is_true(#links > 30)
  end)
  for _, link in ipairs(links) do
    it(link.page .. " -> " .. link.target, function()
      assert.is_truthy(link.file and exists(link.file),
        link.page .. ": " .. link.target .. " points at no file")
      if link.anchor and is_page(link.file) then
        local text = texts[link.file] or support.read(ROOT .. "/" .. link.file)
        assert.is_truthy(anchors(text)[link.anchor],
          link.page .. ": " .. link.target .. ": no heading #" .. link.anchor .. " in " .. link.file)
      end
    end)
  end
end)

describe("docs/jicoo-api.md", function()
  local text = support.read(ROOT .. "/docs/jicoo-api.md")
  local methods = {}
  for name, value in pairs(require("jicoo.api").Client) do
    if type(value) == "function" and not name:match("^_") then
      methods[#methods + 1] = name
    end
  end
  table.sort(methods)
  it("finds the client's calls", function()
    assert.is_true(#methods >= 11)
  end)
  for _, name in ipairs(methods) do
    it("documents jicoo:" .. name, function()
      assert.truthy(text:find("jicoo:" .. name .. "(", 1, true), "jicoo:" .. name .. " is not in docs/jicoo-api.md")
    end)
  end
  for name in pairs(require("jicoo.api").GUESSES) do
    it("names the guess " .. name, function()
      assert.truthy(text:find("GUESSES." .. name, 1, true))
    end)
  end
end)
