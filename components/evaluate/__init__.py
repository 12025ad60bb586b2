"""The evaluate stage: how good, how sure, and compared with what.

Modules in the order a prediction meets them: `metrics` (the study's metrics, bootstrap intervals,
calibration bins), `decision` (calibration slope and intercept, decision curves), `clinical_baseline`
(age and sex on the same folds), `repeats` (repeated cross-validation), `gradcam` and `plots` (figures),
`component` (the pipeline stage), `validation` (external validation, model updating and the recalibration export
serves), and, across runs, `comparisons` (paired differences between two runs)
and `study_tables` (the study's tables).
"""
