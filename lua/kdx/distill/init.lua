--- kdx.distill: moving a teacher's knowledge into a student. The losses
-- (kdx.distill.loss), the FitNets connector (Regressor), contrastive
-- representation distillation (CRD), the training
-- entry point (run), the schemes built on it (multi_teacher, mutual,
-- born_again, teacher_assistant, online_pseudo) and the metrics. Parts
-- load on first use.
-- @module kdx.distill

local where = {
  loss = {"kdx.distill.loss"},
  Regressor = {"kdx.distill.regressor"},
  CRD = {"kdx.distill.crd"},
  pseudo_labels = {"kdx.distill.loss", "pseudo_labels"},
  metrics = {"kdx.distill.metrics"},
  run = {"kdx.distill.run", "run"},
  warmup_factor = {"kdx.distill.run", "warmup_factor"},
  data_impressions = {"kdx.distill.datafree", "data_impressions"},
  deep_inversion = {"kdx.distill.datafree", "deep_inversion"},
  datafree = {"kdx.distill.datafree"},
  adversarial = {"kdx.distill.adversarial", "adversarial"},
  Discriminator = {"kdx.distill.adversarial", "Discriminator"},
  omitted_class = {"kdx.distill.omitted", "omitted_class"},
  bias_correction = {"kdx.distill.omitted", "bias_correction"},
}
for _, name in ipairs{"multi_teacher", "mutual", "born_again", "teacher_assistant", "online_pseudo",
  "TeacherEnsemble"} do
  where[name] = {"kdx.distill.schemes", name}
end

return setmetatable({}, {
  __index = function(distill, key)
    local w = where[key]
    if not w then return nil end
    local m = require(w[1])
    if w[2] then m = m[w[2]] end
    rawset(distill, key, m)
    return m
  end,
})
