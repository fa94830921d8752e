-- kdx.distill.metrics: exact values on hand-made tensors and closed forms
-- for model sizes; nothing here depends on the wall clock.
local kdx = require "kdx"
local nn = kdx.nn
local M = require "kdx.distill.metrics"
local close = require "helpers.close"

local function f64(t) return kdx.tensor(t, "float64") end
local function labels(t) return kdx.tensor(t, "int64") end

-- Two-class logits whose softmax puts exactly confidence c on class k.
local function logits_with(confs, classes)
  local rows = {}
  for i, c in ipairs(confs) do
    local a, b = math.log(c), math.log(1 - c)
    rows[i] = classes[i] == 1 and {a, b} or {b, a}
  end
  return f64(rows)
end

describe("kdx.distill.metrics", function()
  describe("accuracy()", function()
    it("is the share of rows whose argmax is the label", function()
      local out = f64{{1, 2, 0}, {3, 1, 0}, {0, 0, 5}, {2, 1, 0}}
      assert.are.equal(0.75, M.accuracy(out, labels{2, 1, 3, 3}))
    end)

    it("rejects labels that do not match the logits", function()
      assert.has_error(function() M.accuracy(f64{{1, 2}}, labels{1, 2}) end,
        "kdx.distill.metrics.accuracy: labels must be an int64 tensor [N] matching the logits")
    end)
  end)

  describe("top5()", function()
    it("counts a label among the k largest logits", function()
      local out = f64{{5, 4, 3, 2, 1, 0}, {0, 1, 2, 3, 4, 5}}
      assert.are.equal(0.5, M.top5(out, labels{6, 6}))
      assert.are.equal(0.5, M.top5(out, labels{5, 1}, {k = 5})) -- row 2's label ranks 6th
      assert.are.equal(1, M.top5(out, labels{1, 6}, {k = 1}))
      assert.are.equal(0, M.top5(out, labels{2, 5}, {k = 1}))
    end)

    it("is 1 when there are at most k classes", function()
      assert.are.equal(1, M.top5(f64{{0, 1, 2}}, labels{1}))
    end)
  end)

  describe("agreement()", function()
    it("is the share of equal argmax between student and teacher", function()
      local s = f64{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}, {1, 2, 3}, {3, 2, 1}}
      local t = f64{{9, 0, 0}, {1, 0, 0}, {0, 0, 1}, {0, 0, 1}, {0, 1, 0}}
      assert.are.equal(3 / 5, M.agreement(s, t))
    end)

    it("pairs rows by running both models in one pass over a shuffled loader", function()
      kdx.manual_seed(1)
      local m = nn.Sequential{nn.Flatten(), nn.Linear(64, 10)}
      local ds = kdx.data.dataset(kdx.randn{50, 1, 8, 8}, kdx.randint(1, 11, {50}))
      local loader = kdx.data.DataLoader(ds, {batch_size = 16, shuffle = true, seed = 3})
      local copy = nn.Sequential{nn.Flatten(), nn.Linear(64, 10)}
      copy:load_state_dict(m:state_dict())
      assert.are.equal(1, M.agreement(m, copy, loader))
      assert.are.equal(0, loader.epoch) -- measuring leaves the loader's next order alone
    end)

    it("names mismatched shapes", function()
      assert.has_error(function() M.agreement(f64{{1, 2}}, f64{{1, 2, 3}}) end,
        "kdx.distill.metrics.agreement: student logits [1,2] and teacher logits [1,3] differ in shape")
    end)
  end)

  describe("mean_kl()", function()
    local s = f64{{0.5, -1, 2}, {1, 1, 1}, {3, 0, -2}}
    local t = f64{{1, 0, 0}, {0, 2, -1}, {2, 2, 0.5}}

    local function manual(T)
      local st, tt, sum = s:totable(), t:totable(), 0
      for i = 1, #st do
        local zs, zt = 0, 0
        for c = 1, 3 do zs, zt = zs + math.exp(st[i][c] / T), zt + math.exp(tt[i][c] / T) end
        for c = 1, 3 do
          local p, q = math.exp(tt[i][c] / T) / zt, math.exp(st[i][c] / T) / zs
          sum = sum + p * math.log(p / q)
        end
      end
      return sum / #st
    end

    it("is the mean of KL(softmax(t) ‖ softmax(s)) at T = 1", function()
      close.assert_close(M.mean_kl(s, t), manual(1), 1e-12)
    end)

    it("softens both sides by T, with no T² factor", function()
      close.assert_close(M.mean_kl(s, t, {T = 3}), manual(3), 1e-12)
    end)

    it("is 0 for identical logits", function()
      close.assert_close(M.mean_kl(s, s), 0, 1e-15)
    end)
  end)

  describe("ece()", function()
    it("sums |accuracy − confidence| over the bins, weighted by their share", function()
      -- 4 samples at confidence 0.95 (3 right), 2 at 0.65 (1 right)
      local out = logits_with({0.95, 0.95, 0.95, 0.95, 0.65, 0.65}, {1, 1, 1, 1, 2, 2})
      local e, bins = M.ece(out, labels{1, 1, 1, 2, 2, 1})
      close.assert_close(e, 4 / 6 * 0.2 + 2 / 6 * 0.15, 1e-12)
      assert.are.equal(15, #bins)
      assert.are.equal(4, bins[15].count)
      assert.are.equal(2, bins[10].count)
      close.assert_close(bins[15].accuracy, 0.75, 1e-15)
      close.assert_close(bins[10].confidence, 0.65, 1e-12)
    end)

    it("is 0 when the confidence matches the accuracy in every bin", function()
      local out = logits_with({0.75, 0.75, 0.75, 0.75}, {1, 1, 1, 1})
      close.assert_close(M.ece(out, labels{1, 1, 1, 2}), 0, 1e-12)
    end)

    it("puts a confidence on a bin edge in the lower bin, as (lower, upper]", function()
      local _, bins = M.ece(logits_with({0.6}, {1}), labels{1})
      assert.are.equal(1, bins[9].count)
      assert.are.equal(0, bins[10].count)
    end)

    it("takes a number of bins", function()
      local out = logits_with({0.95, 0.65}, {1, 1})
      local e, bins = M.ece(out, labels{1, 1}, {bins = 2})
      assert.are.equal(2, #bins)
      close.assert_close(e, 0.5 * 0.05 + 0.5 * 0.35, 1e-12)
    end)

    it("gives the same from a model and data as from its logits", function()
      kdx.manual_seed(2)
      local m = nn.Sequential{nn.Linear(4, 3)}
      local ds = kdx.data.dataset(kdx.randn{40, 4}, kdx.randint(1, 4, {40}))
      local out = kdx.no_grad(function() return m(ds.x) end)
      close.assert_close(M.ece(m, ds), M.ece(out, ds.y), 1e-9)
      close.assert_close(M.accuracy(m, ds), M.accuracy(out, ds.y), 0)
    end)
  end)

  describe("num_parameters()", function()
    it("counts the trainable scalars", function()
      local m = nn.Sequential{nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2)}
      assert.are.equal(10 * 5 + 5 + 5 * 2 + 2, M.num_parameters(m))
    end)
  end)

  describe("macs()", function()
    it("equals the closed form for Linear and Conv2d layers", function()
      local m = nn.Sequential{
        nn.Conv2d(1, 8, 3, {padding = 1}), nn.ReLU(),                 -- 8x8 out: 8·64·(1·9)
        nn.Conv2d(8, 16, 3, {padding = 1, stride = 2}), nn.BatchNorm2d(16), -- 4x4 out: 16·16·(8·9)
        nn.Conv2d(16, 16, 3, {padding = 1, groups = 4}), nn.MaxPool2d(2), -- 4x4 out: 16·16·(4·9), pool → 2x2
        nn.Flatten(), nn.Linear(64, 10),                                -- 64·10
      }
      local total, layers = M.macs(m, {1, 8, 8})
      assert.are.equal(8 * 64 * 9 + 16 * 16 * 8 * 9 + 16 * 16 * 4 * 9 + 64 * 10, total)
      assert.are.same({"0", "2", "4", "7"}, {layers[1].name, layers[2].name, layers[3].name, layers[4].name})
      assert.are.same({"Conv2d", "Conv2d", "Conv2d", "Linear"}, {layers[1].kind, layers[2].kind, layers[3].kind, layers[4].kind})
      assert.are.equal(16 * 16 * 8 * 9, layers[2].macs)
    end)

    it("counts a Linear on every position of a sequence", function()
      local m = nn.Sequential{nn.Linear(6, 4)}
      assert.are.equal(5 * 6 * 4, (M.macs(m, {5, 6})))
    end)

    it("takes the sample shape from a tensor or data, and leaves the mode and hooks as they were", function()
      local m = nn.Sequential{nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)}
      local ds = kdx.data.dataset(kdx.zeros{3, 1, 8, 8}, labels{1, 2, 3})
      assert.are.equal(64 * 32 + 32 * 10, (M.macs(m, kdx.zeros{7, 1, 8, 8})))
      assert.are.equal(64 * 32 + 32 * 10, (M.macs(m, ds)))
      assert.is_true(m.training)
      assert.are.equal(0, #m:get(2)._hooks)
    end)

    it("probes a model of token ids with the data's own rows (a constant is no valid id)", function()
      local m = nn.Sequential{nn.Embedding(5, 4), nn.Flatten(), nn.Linear(12, 2)}
      local ids = kdx.tensor({{1, 2, 3}, {5, 4, 1}}, "int64")
      assert.are.equal(12 * 2, (M.macs(m, ids)))
      local lat = M.latency(m, ids, {repeats = 2, batch_sizes = {1, 3}})
      assert.is_true(lat[1] > 0 and lat[3] > 0)
    end)
  end)

  describe("latency()", function()
    it("reports milliseconds per sample at batch 1 and 128", function()
      local m = nn.Sequential{nn.Linear(8, 4)}
      local lat = M.latency(m, {8}, {repeats = 3})
      assert.is_true(lat[1] > 0)
      assert.is_true(lat[128] > 0)
    end)
  end)

  describe("checkpoint_size()", function()
    it("is the size of the saved safetensors file", function()
      local m = nn.Sequential{nn.Linear(10, 5), nn.Linear(5, 2)}
      local path = os.tmpname()
      m:save(path)
      local f = assert(io.open(path, "rb"))
      local want = f:seek("end")
      f:close()
      os.remove(path)
      assert.are.equal(want, M.checkpoint_size(m))
      assert.is_true(want > 4 * m:num_parameters())
    end)
  end)

  describe("train_test_gap()", function()
    it("is train accuracy minus test accuracy", function()
      local m = nn.Sequential{nn.Linear(2, 2)}
      kdx.no_grad(function()
        m:get(1).weight:copy_(kdx.tensor{{1, 0}, {0, 1}})
        m:get(1).bias:zero_()
      end)
      local train = kdx.data.dataset(kdx.tensor{{1, 0}, {0, 1}, {2, 0}, {0, 3}}, labels{1, 2, 1, 2})
      local test = kdx.data.dataset(kdx.tensor{{1, 0}, {0, 1}, {2, 0}, {0, 3}}, labels{1, 1, 1, 2})
      local gap, a, b = M.train_test_gap(m, train, test)
      assert.are.equal(1, a)
      assert.are.equal(0.75, b)
      assert.are.equal(0.25, gap)
    end)
  end)

  describe("report()", function()
    it("gathers every metric for student and teacher, with a printable summary", function()
      kdx.manual_seed(3)
      local teacher = nn.Sequential{nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3)}
      local student = nn.Sequential{nn.Linear(4, 3)}
      local ds = kdx.data.dataset(kdx.randn{30, 4}, kdx.randint(1, 4, {30}))
      local r = M.report(student, teacher, ds, {train_data = ds, repeats = 1})
      for _, side in ipairs{r.student, r.teacher} do
        for _, k in ipairs{"accuracy", "top5", "ece", "num_parameters", "macs", "checkpoint_size", "train_test_gap"} do
          assert.is_number(side[k], k)
        end
        assert.is_true(side.latency[1] > 0 and side.latency[128] > 0)
        assert.are.equal(0, side.train_test_gap)
      end
      assert.are.equal(15, r.student.num_parameters)
      assert.are.equal(12, r.student.macs)
      assert.are.equal(4 * 16 + 16 * 3, r.teacher.macs)
      close.assert_close(r.agreement, M.agreement(student, teacher, ds), 0)
      close.assert_close(r.mean_kl, M.mean_kl(student, teacher, ds), 1e-12)
      close.assert_close(r.compression, 131 / 15, 1e-12)
      assert.truthy(tostring(r):find("agreement", 1, true))
      assert.truthy(r.summary:find("MACs / sample", 1, true))
      assert.is_nil(M.report(student, teacher, ds, {latency = false}).student.latency)
    end)
  end)
end)
