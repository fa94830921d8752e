-- kdx.data.words: the word-list loader, on hand-made lists (exact contents)
-- and on Debian's lists (installed by scripts/deps.sh --data), and a small
-- character model that learns the task.
local kdx = require "kdx"
local words = require "kdx.data.words"

-- The error message of fn(...), which must fail.
local function err(fn, ...)
  local ok, msg = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(msg)
end

local function contains(s, ...)
  for _, part in ipairs{...} do
    assert(s:find(part, 1, true), ("%q\ndoes not contain\n%q"):format(s, part))
  end
end

local function set(list)
  local t = {}
  for _, v in ipairs(list) do t[v] = true end
  return t
end

-- The words of a dataset's class k, as a set.
local function of_class(ds, k)
  local t = {}
  for i = 1, ds:size() do
    if ds.y:get(i) == k then t[ds.words[i]] = true end
  end
  return t
end

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("kdx.data.words", function()
  describe("on hand-made lists", function()
    local dir = os.tmpname()
    local LISTS = {
      -- Hotel and Katze are capitalised, it's has an apostrophe, ab is too
      -- short, hotel and café are in two lists: none of them is kept
      ["american-english"] = {"Hotel", "cat", "dog", "it's", "ab", "hotel", "house", "café", "cat"},
      ngerman = {"haus", "straße", "hotel", "über", "Katze", "müde"},
      french = {"chat", "château", "café", "élève"},
    }
    local opts = {languages = {"english", "german", "french"}, dir = dir, per_language = 3, max_len = 8,
      test_fraction = 1 / 3}

    setup(function()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir))
      for name, list in pairs(LISTS) do
        local f = assert(io.open(dir .. "/" .. name, "wb"))
        f:write(table.concat(list, "\n"), "\n")
        f:close()
      end
    end)
    teardown(function() os.execute("rm -rf " .. dir) end)

    it("keeps lower-case words of letters found in one list only", function()
      local train, test = kdx.data.words(opts)
      assert.are.same({"english", "german", "french"}, train.classes)
      assert.are.equal(6, train:size())
      assert.are.equal(3, test:size())
      local all = {}
      for k = 1, 3 do
        all[k] = of_class(train, k)
        for w in pairs(of_class(test, k)) do
          assert.is_nil(all[k][w], "a word in train and test")
          all[k][w] = true
        end
      end
      assert.are.same({"cat", "dog", "house"}, keys(all[1]))
      assert.are.same({"chat", "château", "élève"}, keys(all[3]))
      local german = keys(all[2])
      assert.are.equal(3, #german)
      for _, w in ipairs(german) do assert.is_true(set{"haus", "straße", "über", "müde"}[w]) end
      -- one test word per language
      assert.are.same({1, 1, 1}, test:class_counts())
    end)

    it("encodes UTF-8 characters, padding id 1 and characters 2..V+1", function()
      local train, test = kdx.data.words(opts)
      assert.are.equal(1, train.pad)
      assert.are.same(train.alphabet, test.alphabet)
      -- sorted by code point, each once, every character of every word
      local chars = {}
      for _, ds in ipairs{train, test} do
        for _, w in ipairs(ds.words) do
          for _, cp in utf8.codes(w) do chars[cp] = true end
        end
      end
      local cps = keys(chars)
      assert.are.equal(#cps, #train.alphabet)
      for k, cp in ipairs(cps) do assert.are.equal(utf8.char(cp), train.alphabet[k]) end
      assert.are.same({train:size(), 8}, train.x:shape())
      assert.are.equal("int64", train.x:dtype())
      for i, w in ipairs(train.words) do
        local n = utf8.len(w)
        local j = 0
        for _, cp in utf8.codes(w) do
          j = j + 1
          assert.are.equal(utf8.char(cp), train.alphabet[train.x:get(i, j) - 1])
        end
        for p = n + 1, 8 do assert.are.equal(1, train.x:get(i, p)) end
      end
      assert.are.same(train.words, words.decode(train.x, train.alphabet))
      -- château: 7 characters in 8 bytes
      local found = false
      for i, w in ipairs(train.words) do
        if w == "château" then
          found = true
          assert.are.equal(1, train.x:get(i, 8))
          assert.are.equal("â", train.alphabet[train.x:get(i, 3) - 1])
        end
      end
      for _, w in ipairs(test.words) do found = found or w == "château" end
      assert.is_true(found)
    end)

    it("refuses too few words for per_language, naming the list", function()
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.max_len = 5 -- château and straße drop out
      contains(err(kdx.data.words, o), "kdx.data.words: the french list has only 2 words of 3..5 letters",
        "per_language is 3")
    end)
  end)

  describe("on Debian's word lists", function()
    local O = {per_language = 300, seed = 0}
    local loaded -- {train, test} with O, loaded once
    local function load()
      loaded = loaded or {kdx.data.words(O)}
      return loaded[1], loaded[2]
    end

    it("gives train and test words of every language, padded to max_len", function()
      local train, test = load()
      assert.are.same({"english", "german", "french", "spanish", "italian"}, train.classes)
      assert.are.same({1200, 12}, train.x:shape())
      assert.are.same({300, 12}, test.x:shape())
      assert.are.same({240, 240, 240, 240, 240}, train:class_counts())
      assert.are.same({60, 60, 60, 60, 60}, test:class_counts())
      assert.are.equal(1200, #train.words)
      for _, ds in ipairs{train, test} do
        assert.is_true(ds.x:min():item() >= 1)
        assert.is_true(ds.x:max():item() <= #ds.alphabet + 1)
        for i, w in ipairs(ds.words) do
          local n = utf8.len(w)
          assert.is_true(n >= 3 and n <= 12, w)
          assert.is_nil(w:find("[%u%p%d%s]"), w)
          if n < 12 then assert.are.equal(1, ds.x:get(i, n + 1)) end
          assert.is_true(ds.x:get(i, n) > 1)
        end
      end
      -- the lists hold accented letters: é for one
      assert.is_true(set(train.alphabet)["é"])
      assert.is_true(set(train.alphabet)["ß"])
    end)

    it("never gives a word to two languages, nor a word of two lists", function()
      local train, test = load()
      local label = {}
      for _, ds in ipairs{train, test} do
        for i, w in ipairs(ds.words) do
          assert.is_true(label[w] == nil or label[w] == ds.y:get(i), w)
          label[w] = ds.y:get(i)
        end
      end
      -- words in more than one list (hotel: English and Spanish; piano: all
      -- five; taxi: English, French, Spanish; radio and idea: three)
      for _, w in ipairs{"hotel", "piano", "taxi", "radio", "idea"} do assert.is_nil(label[w], w) end
    end)

    it("is the same for a seed and differs for another", function()
      local a = load()
      local b = kdx.data.words(O)
      local c = kdx.data.words{per_language = 300, seed = 1}
      assert.are.same(a.words, b.words)
      assert.are.equal(0, (a.x - b.x):abs():sum():item())
      assert.are_not.same(a.words, c.words)
    end)

    it("names the package of a missing list, an unknown language and a bad option", function()
      contains(err(kdx.data.words, {dir = "/nonexistent"}), "kdx.data.words: the english word list " ..
        "/nonexistent/american-english was not found", "apt-get install wamerican")
      contains(err(kdx.data.words, {languages = {"english", "klingon"}}), "unknown language klingon at languages[2]",
        "known: english, french, german, italian, spanish")
      contains(err(kdx.data.words, {language = {"english"}}), "unknown option 'language'")
      contains(err(kdx.data.words, {max_len = 2}), "max_len (2) must be >= min_len (3)")
      contains(err(kdx.data.words, {test_fraction = 1}), "test_fraction must be a number from 0 to below 1")
      contains(err(kdx.data.words, {languages = {"english"}}), "at least two")
      contains(err(words.decode, "cat", {}), "kdx.data.words.decode: x must be a tensor [N, L]")
    end)

    it("is learnt by a small character model well above chance", function()
      kdx.manual_seed(0)
      local train, test = load()
      local V, K = #train.alphabet + 1, #train.classes
      -- character trigrams, max over positions, linear classifier
      local Net = kdx.nn.Module:extend("TinyCharNet")
      function Net:init()
        self.embed = kdx.nn.Embedding(V, 8)
        self.conv = kdx.nn.Conv2d(8, 16, {1, 3}, {padding = {0, 1}})
        self.fc = kdx.nn.Linear(16, K)
      end
      function Net:forward(x)
        local e = self.embed(x)
        local h = e:transpose(2, 3):reshape{e:size(1), e:size(3), 1, e:size(2)}
        return self.fc(self.conv(h):relu():amax({3, 4}))
      end
      local net = Net()
      local before = kdx.distill.metrics.accuracy(net, test)
      kdx.train{model = net, data = kdx.data.DataLoader(train, {batch_size = 32, shuffle = true, seed = 1}),
        optimizer = kdx.optim.Adam(net:parameters(), {lr = 1e-2}), epochs = 4, progress = false, log = false}
      net:eval()
      local after = kdx.distill.metrics.accuracy(net, test)
      -- chance is 0.2; 0.35 on 300 test words is 6 standard deviations above it
      assert.is_true(after > 0.35, ("test accuracy %.3f (before training %.3f)"):format(after, before))
      assert.is_true(after > before)
    end)
  end)
end)
