-- Docs move with code: every public function and method has an entry in docs/.
local kdx = require "kdx"

local function read(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

describe("the docs pages", function()
  -- every page under docs/ (an entry may live on any of them)
  local pages = {}
  for name in io.popen("ls docs/*.md"):lines() do pages[#pages + 1] = read(name) end
  local doc = table.concat(pages, "\n")

  local documented
  function documented(name)
    -- in-place forms of unary ops are documented together as `<unary>_`
    local base = name:match("^(.+)_$")
    if base and kdx[base] and doc:find("<unary>_", 1, true) and documented(base) then return true end
    -- an entry names the function in code: `kdx.name`, `t:name` or `name(`
    return doc:find("kdx." .. name, 1, true) or doc:find(":" .. name .. "(", 1, true)
      or doc:find("`" .. name .. "`", 1, true) or doc:find(" " .. name .. "(", 1, true)
      or doc:find("`" .. name .. " ", 1, true)
  end

  it("has an entry for every kdx function", function()
    local missing = {}
    for name, v in pairs(kdx) do
      if type(v) == "function" and not documented(name) then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("has an entry for every tensor method", function()
    local missing = {}
    for name, v in pairs(kdx.Tensor) do
      if type(v) == "function" and not documented(name) then missing[#missing + 1] = name end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)
end)

describe("csrc/kdx.h", function()
  it("gives every public declaration a doc comment", function()
    local header = read("csrc/kdx.h")
    local undocumented = {}
    local prev = ""
    for line in header:gmatch("[^\n]*") do
      local name = line:match("^[%w_ %*]-(kdx_[%w_]+)%(")
      -- a declaration starts a line; the line before it ends a comment, or
      -- it continues a declaration's argument list
      if name and not line:match("^%s") and not prev:match("%*/%s*$") and not prev:match("^%S.*,%s*$") then
        undocumented[#undocumented + 1] = name
      end
      if line ~= "" then prev = line end
    end
    assert.are.same({}, undocumented)
  end)
end)
