--- kdx.data.words: language identification of single words, from Debian's
-- word lists (wamerican, wngerman, wfrench, wspanish, witalian). Each word is
-- a row of character ids: padding is id 1, the alphabet's characters (UTF-8
-- code points, sorted) are ids 2..V+1, so `kdx.nn.Embedding(V + 1, d)` takes
-- a batch as it is. Reached as kdx.data.words{...}.
-- @module kdx.data.words

local kdx = require "kdx"
local args = require "kdx.args"

local fail = args.failer("kdx.data.")
local FNAME = "words"

local M = {}

--- The padding id of every words dataset (characters start at PAD + 1).
M.PAD = 1

-- Language name -> the list's file under dir and the Debian package that installs it.
M.LISTS = {
  english = {file = "american-english", package = "wamerican"},
  german = {file = "ngerman", package = "wngerman"},
  french = {file = "french", package = "wfrench"},
  spanish = {file = "spanish", package = "wspanish"},
  italian = {file = "italian", package = "witalian"},
}

local DEFAULTS = {
  languages = {"english", "german", "french", "spanish", "italian"},
  max_len = 12, min_len = 3, per_language = 4000, seed = 0, test_fraction = 0.2, dir = "/usr/share/dict",
}

local function known_languages()
  local names = {}
  for name in pairs(M.LISTS) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

-- A lower-case letter: a-z, or U+00DF..U+00FF without U+00F7 (÷): ß and the
-- accented lower-case letters of Latin-1, which are every non-ASCII letter
-- the five lists hold in their lower-case words.
local function lower_letter(cp)
  return (cp >= 0x61 and cp <= 0x7A) or (cp >= 0xDF and cp <= 0xFF and cp ~= 0xF7)
end

-- The number of characters of w when it is a lower-case word of letters, else nil.
local function letters(w)
  if w == "" then return nil end
  if not w:find("[^a-z]") then return #w end
  local n = utf8.len(w)
  if not n then return nil end -- not valid UTF-8
  for _, cp in utf8.codes(w) do
    if not lower_letter(cp) then return nil end
  end
  return n
end

-- path -> {words = {...}, len = {word = n}}: the lower-case letter words of a
-- list, each once, in file order. Read once per process (the lists are large).
local cache = {}

local function read_list(path)
  if cache[path] then return cache[path] end
  local f = io.open(path, "rb")
  if not f then return nil end
  local words, len = {}, {}
  for line in f:lines() do
    local w = line:gsub("\r$", "")
    if not len[w] then
      local n = letters(w)
      if n then
        words[#words + 1] = w
        len[w] = n
      end
    end
  end
  f:close()
  cache[path] = {words = words, len = len}
  return cache[path]
end

local function check_opts(opts)
  if opts ~= nil and type(opts) ~= "table" then fail(FNAME, "opts must be a table, got %s", args.what(opts)) end
  opts = opts or {}
  for k in pairs(opts) do
    if DEFAULTS[k] == nil then
      local names = {}
      for name in pairs(DEFAULTS) do names[#names + 1] = name end
      table.sort(names)
      fail(FNAME, "unknown option '%s' (options: %s)", tostring(k), table.concat(names, ", "))
    end
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do
    if opts[k] == nil then o[k] = v else o[k] = opts[k] end
  end
  for _, k in ipairs{"max_len", "min_len", "per_language", "seed"} do
    if math.type(o[k]) ~= "integer" then fail(FNAME, "%s must be an integer, got %s", k, tostring(o[k])) end
  end
  if o.min_len < 1 then fail(FNAME, "min_len must be >= 1, got %d", o.min_len) end
  if o.max_len < o.min_len then fail(FNAME, "max_len (%d) must be >= min_len (%d)", o.max_len, o.min_len) end
  if o.per_language < 1 then fail(FNAME, "per_language must be >= 1, got %d", o.per_language) end
  local tf = o.test_fraction
  if type(tf) ~= "number" or not (tf >= 0 and tf < 1) then
    fail(FNAME, "test_fraction must be a number from 0 to below 1, got %s", tostring(tf))
  end
  if type(o.dir) ~= "string" then fail(FNAME, "dir must be a string, got %s", args.what(o.dir)) end
  if type(o.languages) ~= "table" or #o.languages < 2 then
    fail(FNAME, "languages must be a list of at least two names (known: %s)", known_languages())
  end
  local seen = {}
  for i, name in ipairs(o.languages) do
    if not M.LISTS[name] then
      fail(FNAME, "unknown language %s at languages[%d] (known: %s)", tostring(name), i, known_languages())
    end
    if seen[name] then fail(FNAME, "language %s is listed twice", name) end
    seen[name] = true
  end
  return o
end

-- The characters of w as a list of strings.
local function chars(w)
  local t = {}
  for _, cp in utf8.codes(w) do t[#t + 1] = utf8.char(cp) end
  return t
end

-- A dataset of the words (in order) with labels, encoded through id (char -> id).
local function build(words, labels, id, L, meta)
  local n = #words
  local flat = {}
  for i = 1, n * L do flat[i] = M.PAD end
  for i, w in ipairs(words) do
    local at = (i - 1) * L
    for j, c in ipairs(chars(w)) do flat[at + j] = id[c] end
  end
  local x = n > 0 and kdx.tensor(flat, "int64"):reshape{n, L} or kdx.zeros({0, L}, "int64")
  local y = n > 0 and kdx.tensor(labels, "int64") or kdx.zeros({0}, "int64")
  local ds = kdx.data.dataset(x, y, meta)
  ds.words = words
  return ds
end

--- Language identification of words from Debian's word lists: returns train,
-- test datasets with x int64 [N, max_len] (character ids, 1 = padding, a
-- word's characters from position 1), y int64 [N] (1..#languages), and the
-- fields classes (the language names), alphabet (the characters: id k + 1 is
-- alphabet[k]), words (the strings, row by row) and pad (1). Options and
-- defaults: languages ({"english", "german", "french", "spanish", "italian"}),
-- per_language (4000 words of each), min_len (3), max_len (12): words of
-- min_len..max_len characters, seed (0), test_fraction (0.2, of each
-- language), dir ("/usr/share/dict"). Kept: lower-case words of letters only,
-- found in exactly one of the chosen lists.
function M.load(opts)
  local o = check_opts(opts)
  local lists = {}
  for k, name in ipairs(o.languages) do
    local spec = M.LISTS[name]
    local path = o.dir .. "/" .. spec.file
    local list = read_list(path)
    if not list then
      fail(FNAME, "the %s word list %s was not found; install it with `sudo apt-get install %s` " ..
        "(or `scripts/deps.sh --data`)", name, path, spec.package)
    end
    lists[k] = list
  end
  -- a word in two or more of the chosen lists tells nothing about its language
  local count = {}
  for _, list in ipairs(lists) do
    for _, w in ipairs(list.words) do count[w] = (count[w] or 0) + 1 end
  end
  local n_test = math.floor(o.per_language * o.test_fraction + 0.5)
  local tr_words, tr_y, te_words, te_y = {}, {}, {}, {}
  for k, list in ipairs(lists) do
    local cands = {}
    for _, w in ipairs(list.words) do
      local n = list.len[w]
      if count[w] == 1 and n >= o.min_len and n <= o.max_len then cands[#cands + 1] = w end
    end
    if #cands < o.per_language then
      fail(FNAME, "the %s list has only %d words of %d..%d letters found in no other list; per_language is %d",
        o.languages[k], #cands, o.min_len, o.max_len, o.per_language)
    end
    local perm = kdx.data.permutation(#cands, o.seed + k - 1)
    for i = 1, o.per_language do
      local w = cands[perm:get(i)]
      if i <= n_test then
        te_words[#te_words + 1], te_y[#te_y + 1] = w, k
      else
        tr_words[#tr_words + 1], tr_y[#tr_y + 1] = w, k
      end
    end
  end
  -- the alphabet: every character of the sampled words, by code point
  local seen, alphabet = {}, {}
  for _, ws in ipairs{tr_words, te_words} do
    for _, w in ipairs(ws) do
      for _, cp in utf8.codes(w) do
        if not seen[cp] then
          seen[cp] = true
          alphabet[#alphabet + 1] = cp
        end
      end
    end
  end
  table.sort(alphabet)
  local id = {}
  for k, cp in ipairs(alphabet) do
    alphabet[k] = utf8.char(cp)
    id[alphabet[k]] = M.PAD + k
  end
  -- classes interleaved, the same order for a seed
  local function shuffled(words, labels, seed)
    local w, y = {}, {}
    if #words == 0 then return w, y end
    local perm = kdx.data.permutation(#words, seed)
    for i = 1, #words do
      local j = perm:get(i)
      w[i], y[i] = words[j], labels[j]
    end
    return w, y
  end
  local classes = {}
  for k, name in ipairs(o.languages) do classes[k] = name end
  local function meta() return {classes = {table.unpack(classes)}, alphabet = {table.unpack(alphabet)}, pad = M.PAD} end
  tr_words, tr_y = shuffled(tr_words, tr_y, o.seed)
  te_words, te_y = shuffled(te_words, te_y, o.seed + 1)
  return build(tr_words, tr_y, id, o.max_len, meta()), build(te_words, te_y, id, o.max_len, meta())
end

--- The words of rows x (int64 [N, L] character ids) as strings, read through
-- alphabet (a dataset's `alphabet`); padding and unknown ids are skipped.
function M.decode(x, alphabet)
  if not kdx.is_tensor(x) or x:dim() ~= 2 then
    fail("words.decode", "x must be a tensor [N, L], got %s", args.what(x))
  end
  local out = {}
  local rows = x:to("int64")
  for i = 1, rows:size(1) do
    local t = {}
    for j = 1, rows:size(2) do
      local c = alphabet[rows:get(i, j) - M.PAD]
      if c then t[#t + 1] = c end
    end
    out[i] = table.concat(t)
  end
  return out
end

return M
