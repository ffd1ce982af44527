-- The vendored fixtures (spec/fixtures/README.md) stay equal to their reference copies: every
-- file byte for byte, none missing, none extra. The reference is the workplace's shared folder,
-- ../shared next to the repository, or $JICOO_SHARED_REFERENCE; a clone without one has nothing
-- to compare with, and the spec is pending.
local support = require "support"

local override = os.getenv("JICOO_SHARED_REFERENCE")
local reference = override or support.root .. "/../shared"
local vendored = support.fixtures

-- Where each vendored piece comes from: a folder's whole tree, or one file. Paths are relative
-- to spec/fixtures/ and to the reference folder.
local SOURCES = {
  { here = "", there = "fixtures", tree = true },
  { here = "JSONTestSuite/test_parsing", there = "conformance/JSONTestSuite/test_parsing", tree = true },
  { here = "JSONTestSuite/LICENSE", there = "conformance/JSONTestSuite/LICENSE" },
  { here = "jicoo-webhook.schema.json", there = "spec/jicoo-webhook.schema.json" },
}
-- Written here, not copied.
local OWN = { ["README.md"] = true }

local function join(folder, name)
  if folder == "" or name == "" then
    return folder .. name
  end
  return folder .. "/" .. name
end

local function is_folder(path)
  local _, ok = support.run("test -d " .. support.quote(path))
  return ok
end

-- Every file under a folder, as paths relative to it, sorted (none when there is no folder).
local function files_under(folder)
  local out, ok = support.run("cd " .. support.quote(folder) .. " 2>/dev/null && find . -type f")
  local names = {}
  if not ok then
    return names
  end
  for name in out:gmatch("[^\n]+") do
    names[#names + 1] = (name:gsub("^%./", ""))
  end
  table.sort(names)
  return names
end

local function read_or_nil(path)
  local file = io.open(path, "rb")
  if not file then
    return nil
  end
  local data = file:read("*a")
  file:close()
  return data
end

-- The reference path of a vendored file: the most specific source that holds it.
local function origin(name)
  local best
  for _, source in ipairs(SOURCES) do
    local inside = name == source.here
      or source.tree and (source.here == "" or name:sub(1, #source.here + 1) == source.here .. "/")
    if inside and (not best or #source.here > #best.here) then
      best = source
    end
  end
  local rest = best.here == "" and name or name:sub(#best.here + 2)
  return best.tree and join(best.there, rest) or best.there
end

describe("spec/fixtures", function()
  if not is_folder(reference) then
    if override then
      it("finds $JICOO_SHARED_REFERENCE", function()
        error("JICOO_SHARED_REFERENCE names no folder: " .. override)
      end)
    else
      pending("equals the reference copies in " .. reference .. " (absent: nothing to compare with)")
    end
    return
  end

  -- The reference's files, listed once: source => relative names ({ "" } for a single file).
  local listed, known = {}, {}
  for _, source in ipairs(SOURCES) do
    local there = join(reference, source.there)
    local names = {}
    if source.tree then
      names = files_under(there)
    elseif read_or_nil(there) then
      names = { "" }
    end
    listed[source] = names
    for _, name in ipairs(names) do
      known[join(source.there, name)] = true
    end
  end

  for _, source in ipairs(SOURCES) do
    local what = source.tree and "every file of " .. source.there .. "/" or source.there
    it("holds " .. what .. ", byte for byte", function()
      local there = join(reference, source.there)
      assert.is_true(#listed[source] > 0, "nothing at " .. there)
      local wrong = {}
      for _, name in ipairs(listed[source]) do
        local copy = read_or_nil(join(join(vendored, source.here), name))
        if copy == nil then
          wrong[#wrong + 1] = "missing: " .. join(source.here, name)
        elseif copy ~= support.read(join(there, name)) then
          wrong[#wrong + 1] = "differs: " .. join(source.here, name)
        end
      end
      assert.are.same({}, wrong)
    end)
  end

  it("holds nothing the reference does not", function()
    local extra = {}
    for _, name in ipairs(files_under(vendored)) do
      if not OWN[name] and not known[origin(name)] then
        extra[#extra + 1] = name
      end
    end
    assert.are.same({}, extra)
  end)
end)
