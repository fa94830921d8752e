--- kdx.report: an experiment as one self-contained HTML page (inline SVG
-- charts, images embedded as PNG data, no JavaScript), plus metrics.json and
-- the models' checkpoints, all written atomically into one folder.
--
-- A report is a list of sections, each a table with a `kind`:
--   {kind = "config", title =, values = {key = value, ...}}
--   {kind = "table", title =, columns = {...}, rows = {{...}, ...}, caption =}
--   {kind = "curves", title =, x_label =, y_label =, series = {{name =, x = {...} (optional), y = {...}}, ...}}
--   {kind = "scatter", title =, x_label =, y_label =, points = {{label =, x =, y =}, ...},
--     front = "max_y_min_x" (draws the Pareto front; nil for none)}
--   {kind = "images", title =, items = {{image = tensor [C,H,W] in [0,1] or a PNG path, caption =}, ...}}
--   {kind = "text_attributions", title =, items = {{tokens = {...}, scores = {...}, caption =}, ...}}
--   {kind = "text", title =, body = "paragraphs (blank line between)"}
--   {kind = "code", title =, body = "preformatted text (rules, logs)"}
-- @module kdx.report

local kdx = require "kdx"
local args = require "kdx.args"

local fail = args.failer("kdx.report.")
local M = {}

-- ------------------------------------------------------------ escaping --

local function esc(s)
  return (tostring(s):gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

local function num(v, prec)
  if type(v) ~= "number" then return tostring(v) end
  if v ~= v then return "NaN" end
  if math.type(v) == "integer" then return tostring(v) end
  return ("%." .. (prec or 4) .. "g"):format(v)
end

-- ------------------------------------------------------------- writing --

-- Writes s to path through a temporary file and a rename, so a reader (or a
-- run killed half-way) never sees half a file.
local function atomic_write(fname, path, s)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then fail(fname, "cannot write %s: %s", tmp, err) end
  local ok, werr = f:write(s)
  f:close()
  if not ok then
    os.remove(tmp)
    fail(fname, "cannot write %s: %s", tmp, werr)
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    fail(fname, "cannot rename %s to %s: %s", tmp, path, rerr)
  end
end

local function read_bytes(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 3, 0, -1 do q[4 - k] = B64:sub((n >> (6 * k)) % 64 + 1, (n >> (6 * k)) % 64 + 1) end
    if not b then q[3], q[4] = "=", "=" elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end
M._base64 = base64

-- --------------------------------------------------------------- JSON --

local function json(v, seen)
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" then return tostring(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    if math.type(v) == "integer" then return tostring(v) end
    local short = ("%.15g"):format(v) -- the shortest of the two that reads back exactly
    return tonumber(short) == v and short or ("%.17g"):format(v)
  end
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local named = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r"}
      return named[c] or ("\\u%04x"):format(c:byte())
    end) .. '"'
  end
  if kdx.is_tensor(v) then return json(v:dim() == 0 and v:item() or v:totable(), seen) end
  if t == "table" then
    seen = seen or {}
    if seen[v] then fail("write", "metrics hold a cycle") end
    seen[v] = true
    local n = #v
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    local out = {}
    if #keys == n then -- a list
      for i = 1, n do out[i] = json(v[i], seen) end
      seen[v] = nil
      return "[" .. table.concat(out, ", ") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      if type(v[k]) ~= "function" and not (type(v[k]) == "table" and kdx.nn.Module.is_module(v[k])) then
        out[#out + 1] = json(tostring(k)) .. ": " .. json(v[k], seen)
      end
    end
    seen[v] = nil
    return "{" .. table.concat(out, ", ") .. "}"
  end
  return json(tostring(v))
end
--- v as JSON text (tables with keys 1..n become arrays; other keys sorted; NaN is null).
M.json = json

-- ---------------------------------------------------------------- SVG --

local W, H, PAD = 720, 340, {l = 60, r = 250, t = 16, b = 44}
local COLORS = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

local function range(list)
  local lo, hi = math.huge, -math.huge
  for _, v in ipairs(list) do
    if v == v then lo, hi = math.min(lo, v), math.max(hi, v) end
  end
  if lo == math.huge then return 0, 1 end
  if lo == hi then lo, hi = lo - 0.5, hi + 0.5 end
  local pad = (hi - lo) * 0.05
  return lo - pad, hi + pad
end

local function ticks(lo, hi)
  local step = 10 ^ math.floor(math.log(hi - lo, 10))
  if (hi - lo) / step < 3 then step = step / 2 end
  if (hi - lo) / step > 8 then step = step * 2 end
  local out = {}
  for v = math.ceil(lo / step) * step, hi, step do out[#out + 1] = v end
  return out
end

-- The frame of a chart: axes, ticks and labels; returns the svg parts and
-- the x, y mappings from data to pixels.
local function frame(x0, x1, y0, y1, xl, yl)
  local pw, ph = W - PAD.l - PAD.r, H - PAD.t - PAD.b
  local function px(x) return PAD.l + (x - x0) / (x1 - x0) * pw end
  local function py(y) return PAD.t + ph - (y - y0) / (y1 - y0) * ph end
  local s = {('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
    .. 'font-family="sans-serif" font-size="11">'):format(W, H, W, H),
    ('<rect x="%d" y="%d" width="%d" height="%d" fill="#fff" stroke="#999"/>'):format(PAD.l, PAD.t, pw, ph)}
  for _, v in ipairs(ticks(x0, x1)) do
    s[#s + 1] = ('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/><text x="%.1f" y="%d" '
      .. 'text-anchor="middle">%s</text>'):format(px(v), PAD.t, px(v), PAD.t + ph, px(v), PAD.t + ph + 14, num(v, 3))
  end
  for _, v in ipairs(ticks(y0, y1)) do
    s[#s + 1] = ('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#eee"/><text x="%d" y="%.1f" '
      .. 'text-anchor="end">%s</text>'):format(PAD.l, py(v), PAD.l + pw, py(v), PAD.l - 4, py(v) + 4, num(v, 3))
  end
  s[#s + 1] = ('<text x="%.1f" y="%d" text-anchor="middle">%s</text>'):format(PAD.l + pw / 2, H - 8, esc(xl or ""))
  s[#s + 1] = ('<text x="14" y="%.1f" text-anchor="middle" transform="rotate(-90 14 %.1f)">%s</text>'):format(
    PAD.t + ph / 2, PAD.t + ph / 2, esc(yl or ""))
  return s, px, py
end

local function legend(s, names)
  for i, name in ipairs(names) do
    local y = PAD.t + 6 + (i - 1) * 16
    s[#s + 1] = ('<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>'):format(
      W - PAD.r + 10, y, COLORS[(i - 1) % #COLORS + 1], W - PAD.r + 24, y + 9, esc(name))
  end
end

--- A line chart as SVG text: series = {{name =, x = {...} (default 1..n), y = {...}}, ...}.
function M.line_chart(series, opts)
  opts = opts or {}
  local xs, ys = {}, {}
  for _, sr in ipairs(series) do
    for i, y in ipairs(sr.y) do
      xs[#xs + 1], ys[#ys + 1] = sr.x and sr.x[i] or i, y
    end
  end
  local x0, x1 = range(xs)
  local y0, y1 = range(ys)
  local s, px, py = frame(x0, x1, y0, y1, opts.x_label, opts.y_label)
  local names = {}
  for k, sr in ipairs(series) do
    local pts = {}
    for i, y in ipairs(sr.y) do
      if y == y then pts[#pts + 1] = ("%.1f,%.1f"):format(px(sr.x and sr.x[i] or i), py(y)) end
    end
    local c = COLORS[(k - 1) % #COLORS + 1]
    s[#s + 1] = ('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'):format(c, table.concat(pts, " "))
    names[k] = sr.name or ("series " .. k)
  end
  legend(s, names)
  s[#s + 1] = "</svg>"
  return table.concat(s, "\n")
end

--- The points not dominated by another (smaller or equal x and larger or
-- equal y, one strictly): the Pareto front, sorted by x.
function M.pareto_front(points)
  local front = {}
  for i, p in ipairs(points) do
    local dominated = false
    for j, q in ipairs(points) do
      if i ~= j and q.x <= p.x and q.y >= p.y and (q.x < p.x or q.y > p.y) then dominated = true break end
    end
    if not dominated then front[#front + 1] = p end
  end
  table.sort(front, function(a, b) return a.x < b.x end)
  return front
end

--- A scatter plot as SVG text, labelled points, with the Pareto front
-- (opts.front = "max_y_min_x") drawn as a step line.
function M.scatter_chart(points, opts)
  opts = opts or {}
  local xs, ys = {}, {}
  for i, p in ipairs(points) do xs[i], ys[i] = p.x, p.y end
  local x0, x1 = range(xs)
  local y0, y1 = range(ys)
  local s, px, py = frame(x0, x1, y0, y1, opts.x_label, opts.y_label)
  if opts.front then
    local pts = {}
    for _, p in ipairs(M.pareto_front(points)) do pts[#pts + 1] = ("%.1f,%.1f"):format(px(p.x), py(p.y)) end
    s[#s + 1] = ('<polyline fill="none" stroke="#d62728" stroke-dasharray="4 3" stroke-width="1.5" points="%s"/>')
      :format(table.concat(pts, " "))
  end
  for _, p in ipairs(points) do
    s[#s + 1] = ('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/><text x="%.1f" y="%.1f">%s</text>'):format(px(p.x),
      py(p.y), p.color or COLORS[1], px(p.x) + 6, py(p.y) - 6, esc(p.label or ""))
  end
  if opts.front then legend(s, {"models", "Pareto front"}) end
  s[#s + 1] = "</svg>"
  return table.concat(s, "\n")
end

-- ------------------------------------------------------------ sections --

local function png_data(fname, img, dir, k)
  local bytes
  if type(img) == "string" then
    bytes = read_bytes(img)
    if not bytes then fail(fname, "cannot read image %s", img) end
  elseif kdx.is_tensor(img) then
    local tmp = ("%s/.image-%d.png"):format(dir, k)
    kdx.data.save_png(tmp, img)
    bytes = read_bytes(tmp)
    os.remove(tmp)
  else
    fail(fname, "an image must be a tensor [C,H,W] in [0,1] or a PNG path, got %s", args.what(img))
  end
  return "data:image/png;base64," .. base64(bytes)
end

local RENDER = {}

function RENDER.config(sec)
  local keys = {}
  for k in pairs(sec.values or {}) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {"<table class=\"kv\">"}
  for _, k in ipairs(keys) do
    local v = sec.values[k]
    if type(v) == "table" then v = json(v) end
    out[#out + 1] = ("<tr><th>%s</th><td>%s</td></tr>"):format(esc(k), esc(num(v)))
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

RENDER.table = function(sec)
  local out = {"<table>", "<tr>"}
  for _, c in ipairs(sec.columns or {}) do out[#out + 1] = "<th>" .. esc(c) .. "</th>" end
  out[#out + 1] = "</tr>"
  for _, r in ipairs(sec.rows or {}) do
    out[#out + 1] = "<tr>"
    for i = 1, #(sec.columns or r) do out[#out + 1] = "<td>" .. esc(num(r[i] == nil and "" or r[i])) .. "</td>" end
    out[#out + 1] = "</tr>"
  end
  out[#out + 1] = "</table>"
  return table.concat(out, "\n")
end

function RENDER.curves(sec) return M.line_chart(sec.series or {}, sec) end

function RENDER.scatter(sec) return M.scatter_chart(sec.points or {}, sec) end

function RENDER.images(sec, dir, counter)
  local out = {"<div class=\"images\">"}
  for _, item in ipairs(sec.items or {}) do
    counter.n = counter.n + 1
    -- small pictures (an 8x8 digit) are enlarged by a whole factor to >= 128 px
    local width = item.width
    if not width and kdx.is_tensor(item.image) and item.image:dim() >= 2 then
      local w = item.image:size(item.image:dim())
      width = w * math.max(1, math.ceil(128 / w))
    end
    out[#out + 1] = ('<figure><img src="%s" alt="%s"%s><figcaption>%s</figcaption></figure>'):format(
      png_data("write", item.image, dir, counter.n), esc(item.caption or ""),
      width and (' width="%d"'):format(width) or "", esc(item.caption or ""))
  end
  out[#out + 1] = "</div>"
  return table.concat(out, "\n")
end

-- A score as a background colour: red for positive, blue for negative,
-- the strength relative to the largest |score| of the item.
local function shade(v, vmax)
  local a = vmax > 0 and math.min(1, math.abs(v) / vmax) or 0
  if v >= 0 then return ("rgba(214,39,40,%.2f)"):format(a) end
  return ("rgba(31,119,180,%.2f)"):format(a)
end

function RENDER.text_attributions(sec)
  local out = {}
  for _, item in ipairs(sec.items or {}) do
    local vmax = 0
    for _, v in ipairs(item.scores) do vmax = math.max(vmax, math.abs(v)) end
    local spans = {}
    for i, tok in ipairs(item.tokens) do
      local v = item.scores[i] or 0
      spans[i] = ('<span class="tok" style="background:%s" title="%s">%s</span>'):format(shade(v, vmax), num(v),
        esc(tok))
    end
    out[#out + 1] = ('<p class="attr">%s <span class="cap">%s</span></p>'):format(table.concat(spans),
      esc(item.caption or ""))
  end
  return table.concat(out, "\n")
end

function RENDER.text(sec)
  local out = {}
  for para in (tostring(sec.body or "") .. "\n\n"):gmatch("(.-)\n\n") do
    if para:match("%S") then out[#out + 1] = "<p>" .. esc(para) .. "</p>" end
  end
  return table.concat(out, "\n")
end

function RENDER.code(sec) return "<pre>" .. esc(sec.body or "") .. "</pre>" end

local CSS = [[
body { font-family: sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } table.kv th, table.kv td { text-align: left; }
.images { display: flex; flex-wrap: wrap; gap: 12px; } figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; }
img { image-rendering: pixelated; } .tok { font-family: monospace; font-size: 1.2em; padding: 1px 0; }
.cap { color: #555; font-size: 0.85em; } .caption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
]]

local function check_sections(fname, sections)
  if type(sections) ~= "table" then fail(fname, "sections must be a list of tables") end
  for i, sec in ipairs(sections) do
    if type(sec) ~= "table" then fail(fname, "section %d must be a table, got %s", i, args.what(sec)) end
    if not RENDER[sec.kind] then
      fail(fname, "section %d has kind %s (known: code, config, curves, images, scatter, table, text, text_attributions)", i,
        tostring(sec.kind))
    end
  end
end

--- The report as HTML text (images are embedded; dir holds temporary files).
function M.html(results, dir)
  check_sections("html", results.sections or {})
  local out = {"<!DOCTYPE html>", "<html><head><meta charset=\"utf-8\">",
    "<title>" .. esc(results.title or "kdx report") .. "</title>", "<style>" .. CSS .. "</style></head><body>",
    "<h1>" .. esc(results.title or "kdx report") .. "</h1>"}
  if results.summary then out[#out + 1] = "<p>" .. esc(results.summary) .. "</p>" end
  local counter = {n = 0}
  for _, sec in ipairs(results.sections or {}) do
    out[#out + 1] = "<section>"
    if sec.title then out[#out + 1] = "<h2>" .. esc(sec.title) .. "</h2>" end
    out[#out + 1] = RENDER[sec.kind](sec, dir or os.getenv("TMPDIR") or "/tmp", counter)
    if sec.caption then out[#out + 1] = "<p class=\"caption\">" .. esc(sec.caption) .. "</p>" end
    out[#out + 1] = "</section>"
  end
  out[#out + 1] = ("<p class=\"caption\">Written by kdx %s.</p></body></html>"):format(esc(kdx._VERSION or ""))
  return table.concat(out, "\n")
end

--- Writes dir/report.html, dir/metrics.json (results.metrics) and
-- dir/<name>.safetensors for each module in results.checkpoints, each
-- atomically; creates dir if needed. Returns the report's path. In a
-- distributed run (kdx.dist.size() > 1) only rank 0 writes, unless
-- opts.every_rank; every rank checks the arguments and gets the path.
function M.write(dir, results, opts)
  if type(dir) ~= "string" or dir == "" then fail("write", "dir must be a folder path, got %s", args.what(dir)) end
  if type(results) ~= "table" then fail("write", "results must be a table, got %s", args.what(results)) end
  if opts ~= nil and type(opts) ~= "table" then fail("write", "opts must be a table, got %s", args.what(opts)) end
  check_sections("write", results.sections or {})
  for name, model in pairs(results.checkpoints or {}) do
    if type(model) ~= "table" or not kdx.nn.Module.is_module(model) then
      fail("write", "checkpoints.%s must be a module, got %s", tostring(name), args.what(model))
    end
  end
  if not (opts and opts.every_rank) and kdx.dist.size() > 1 and kdx.dist.rank() ~= 0 then
    return dir .. "/report.html"
  end
  os.execute(("mkdir -p '%s' 2>/dev/null"):format(dir:gsub("'", "'\\''")))
  local probe = io.open(dir .. "/.kdx-probe", "wb")
  if not probe then fail("write", "cannot create or write to folder %s", dir) end
  probe:close()
  os.remove(dir .. "/.kdx-probe")
  for name, model in pairs(results.checkpoints or {}) do model:save(("%s/%s.safetensors"):format(dir, name)) end
  atomic_write("write", dir .. "/metrics.json", json(results.metrics or {}) .. "\n")
  local path = dir .. "/report.html"
  atomic_write("write", path, M.html(results, dir))
  return path
end

return M
