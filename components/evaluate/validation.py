"""External validation and model updating: what a new site needs to know before it trusts, or corrects, the model.

What is reported follows TRIPOD+AI and Riley et al. (BMJ 2024, "Evaluation of clinical prediction models (part 2):
how to undertake an external validation study"): case mix beside the development data's, discrimination (ROC AUC,
PR AUC), the calibration hierarchy of Van Calster et al. (2016) (observed/expected ratio and calibration-in-the-large,
calibration slope, a flexible calibration curve; no Hosmer-Lemeshow test, which says nothing about the size or
direction of miscalibration), net benefit, the decision rule's sensitivity, specificity, PPV and NPV, each with a
bootstrap interval drawing whole patients (`metrics.bootstrap`, the resamples evaluate draws, so the same rows give
evaluate's numbers), and subgroups where both outcomes are frequent enough to compute anything.

Model updating (Vergouwe et al. 2017, "A closed testing procedure to select an appropriate method for updating
prediction models") refits, by maximum likelihood on logit(p) of the served probability, either the intercept
(recalibration-in-the-large: logit p' = a + logit p) or intercept and slope (logistic recalibration:
logit p' = a + b logit p); `closed_test` picks the least extensive update the site's data support. At the MLE the
score equation for the intercept makes the mean updated risk equal the observed death rate, for either update.
The same logistic recalibration, fitted on the out-of-fold predictions, is what export builds into the served
graph (`development_recalibration`), and evaluate estimates it honestly by cross-fitting (`cross_fitted`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import special, stats

from common.decision import called_died
from components.evaluate import decision as evaluate_decision
from components.evaluate import metrics as evaluate_metrics

# Riley et al. (BMJ 2024): about 100 events (and 100 non-events) for a precise calibration slope.
EVENTS_FOR_PRECISE_SLOPE = 100
# A subgroup is shown when it holds at least this many deaths and this many survivors (images, at the row level).
MIN_EACH_OUTCOME = 5
AGE_BANDS = ((0, 50, "under 50"), (50, 70, "50-69"), (70, math.inf, "70 and over"))
UPDATES = ("intercept", "logistic")
ORIGINAL = "original"
CLOSED_TEST_ALPHA = 0.05
CURVE_POINTS = 50
SPLINE_KNOT_QUANTILES = (0.1, 0.5, 0.9)  # Harrell's three knots of a restricted (natural) cubic spline
CROSS_FIT_FOLDS = 5


# ---------------------------------------------------------------- the statistics of one set of rows
def observed_expected(labels: Sequence[int], probabilities: Sequence[float]) -> float:
    """Observed deaths over the sum of predicted risks (1 = ideal; above 1, risks underestimated)."""
    expected = float(np.sum(probabilities))
    return float(np.sum(labels)) / expected if expected > 0 else math.nan


def threshold_rates(labels: Sequence[int], probabilities: Sequence[float], threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and NPV of the decision rule (`common.decision`) at `threshold`."""
    counts = evaluate_metrics.confusion(labels, called_died(np.asarray(probabilities, float), threshold))
    rates, ratio = evaluate_metrics.rates(counts), evaluate_metrics.ratio
    return {"sensitivity": rates["tpr"], "specificity": rates["tnr"],
            "ppv": ratio(counts["tp"], counts["tp"] + counts["fp"]),
            "npv": ratio(counts["tn"], counts["tn"] + counts["fn"])}


def validation_statistics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Every bootstrapped number of one set: discrimination, the calibration hierarchy, the decision rule."""
    values = evaluate_metrics.metric_values(labels, probabilities, threshold)
    fitted = evaluate_decision.calibration_slope_intercept(labels, probabilities)
    return {"roc_auc": values["roc_auc"], "pr_auc": values["pr_auc"], "brier": values["brier"],
            "o_e_ratio": observed_expected(labels, probabilities),
            "calibration_in_the_large": fitted["intercept"], "calibration_slope": fitted["slope"],
            **threshold_rates(labels, probabilities, threshold)}


def summarize(labels: Sequence[int], probabilities: Sequence[float], patients: Sequence[str], threshold: float,
              resamples: int, seed: int) -> dict[str, Any]:
    """The estimates of `validation_statistics` and their 95% intervals, drawing whole patients."""
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    statistic = lambda y, p: validation_statistics(y, p, threshold)  # noqa: E731
    drawn = evaluate_metrics.bootstrap(labels, probabilities, np.asarray(patients), resamples, seed, statistic)
    return {"n": int(len(labels)), "events": int(labels.sum()), "patients": int(len(set(patients))),
            "mean_predicted": float(probabilities.mean()), "observed_rate": float(labels.mean()),
            "estimate": validation_statistics(labels, probabilities, threshold),
            "intervals": drawn["intervals"], "resamples": resamples, "unit": "patient"}


# ---------------------------------------------------------------- the flexible calibration curve
def _spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Intercept, x and the restricted cubic spline terms (linear beyond the outer knots): a natural spline."""
    def cube(v):
        return np.maximum(v, 0) ** 3
    first, last, before_last = knots[0], knots[-1], knots[-2]
    scale = (last - first) ** 2
    terms = [(cube(x - k) - cube(x - before_last) * (last - k) / (last - before_last)
              + cube(x - last) * (before_last - k) / (last - before_last)) / scale for k in knots[:-2]]
    return np.column_stack([np.ones_like(x), x, *terms])


def _fitted_curve(labels: np.ndarray, x: np.ndarray, knots: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """P(died) on `grid` (logits) of a logistic regression on the spline of logit(p); NaN if the fit fails or does
    not converge (a resample whose outcomes the spline separates)."""
    if len(np.unique(labels)) < 2:
        return np.full(len(grid), math.nan)
    with np.errstate(all="ignore"):
        try:
            beta, converged = evaluate_decision.logistic_fit_converged(_spline_basis(x, knots), labels.astype(float),
                                                                       np.zeros_like(x))
        except np.linalg.LinAlgError:
            return np.full(len(grid), math.nan)
        curve = special.expit(_spline_basis(grid, knots) @ beta)
    return curve if converged and np.all(np.isfinite(curve)) else np.full(len(grid), math.nan)


def calibration_curve(labels: Sequence[int], probabilities: Sequence[float], patients: Sequence[str],
                      resamples: int, seed: int, level: float = 0.95) -> dict[str, Any]:
    """Observed risk against predicted risk along a natural cubic spline of logit(p) (knots at the 10th, 50th and
    90th percentiles), between the 1st and 99th percentile of the predictions, with a percentile band from
    refitting on patient bootstrap resamples (the same draws as the intervals)."""
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    x = evaluate_decision.logit(probabilities)
    knots = np.quantile(x, SPLINE_KNOT_QUANTILES)
    low, high = np.quantile(probabilities, (0.01, 0.99))
    grid = np.linspace(low, high, CURVE_POINTS)
    if len(np.unique(knots)) < len(knots):
        return {"predicted": grid.tolist(), "observed": [math.nan] * len(grid), "low": [math.nan] * len(grid),
                "high": [math.nan] * len(grid), "method": "not fitted: the predictions take too few distinct values"}
    grid_logit = evaluate_decision.logit(grid)
    curve = _fitted_curve(labels, x, knots, grid_logit)
    draws = np.array([_fitted_curve(labels[rows], x[rows], knots, grid_logit)
                      for rows in evaluate_metrics.group_resamples(np.asarray(patients), resamples, seed)])
    bands = [evaluate_metrics.percentile_interval(draws[:, i], level) for i in range(len(grid))]
    return {"predicted": grid.tolist(), "observed": curve.tolist(), "low": [b["low"] for b in bands],
            "high": [b["high"] for b in bands], "level": level,
            "method": "logistic regression on a natural cubic spline of logit(p), knots at the 10th, 50th and 90th "
                      f"percentiles; {int(level * 100)}% band: {resamples} patient bootstrap refits"}


# ---------------------------------------------------------------- subgroups
def subgroup_masks(age: np.ndarray, sex: np.ndarray, views: Sequence[str]) -> dict[str, np.ndarray]:
    """{name: row mask} of sex, age bands and AP/PA views (`clinical_baseline.admission_features`' codes)."""
    views = np.array([str(v).strip().upper() for v in views])
    masks = {"sex: male": sex == 1.0, "sex: female": sex == 0.0}
    masks.update({f"age: {name}": (age >= low) & (age < high) for low, high, name in AGE_BANDS})
    masks["view: PA"] = views == "PA"
    masks["view: AP (any AP view)"] = np.char.startswith(views, "AP")
    return masks


def subgroups(rows: Mapping[str, np.ndarray], threshold: float, resamples: int, seed: int) -> dict[str, Any]:
    """Each subgroup's statistics where it holds at least `MIN_EACH_OUTCOME` deaths and as many survivors; the
    others named with their counts."""
    result = {}
    for name, mask in subgroup_masks(rows["age"], rows["sex"], rows["view"]).items():
        labels = rows["label"][mask]
        deaths, survivors = int(labels.sum()), int(len(labels) - labels.sum())
        if min(deaths, survivors) < MIN_EACH_OUTCOME:
            result[name] = {"n": int(len(labels)), "events": deaths, "computed": False}
        else:
            result[name] = {"computed": True, **summarize(labels, rows["probability"][mask], rows["patient"][mask],
                                                         threshold, resamples, seed)}
    return result


# ---------------------------------------------------------------- how many events
def events_statement(events: int, patients_who_died: int) -> str:
    """The site's deaths against what a precise external validation needs (Riley et al., BMJ 2024)."""
    enough = events >= EVENTS_FOR_PRECISE_SLOPE
    return (f"This site has {events} death(s) among its images ({patients_who_died} patient(s) who died). Riley et "
            f"al. (BMJ 2024) suggest about {EVENTS_FOR_PRECISE_SLOPE} events (and as many non-events) for a precise "
            "estimate of the calibration slope: "
            + ("this site reaches it." if enough else
               "this site does not, so every interval here is wide and the estimates may move a lot with more "
               "patients; read them as a first look, not as a verdict."))


# ---------------------------------------------------------------- model updating
def log_likelihood(labels: Sequence[int], probabilities: Sequence[float]) -> float:
    p = special.expit(evaluate_decision.logit(probabilities))  # clipped as the fits see it
    y = np.asarray(labels, float)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)))


def apply_update(probabilities: Sequence[float], intercept: float, slope: float) -> np.ndarray:
    """sigmoid(intercept + slope * logit(p)): what the updated served graph computes."""
    return special.expit(intercept + slope * evaluate_decision.logit(probabilities))


def fit_update(labels: Sequence[int], probabilities: Sequence[float], method: str) -> dict[str, Any]:
    """{'method', 'intercept', 'slope', 'converged'} of an update fitted by maximum likelihood on logit(p); a fit
    that does not converge (outcomes the predictions separate: no maximum exists) is not an update to serve."""
    labels = np.asarray(labels, float)
    x = evaluate_decision.logit(probabilities)
    ones = np.ones((len(x), 1))
    with np.errstate(all="ignore"):
        if method == ORIGINAL:
            (intercept, slope), converged = (0.0, 1.0), True
        elif method == "intercept":
            (intercept,), converged = evaluate_decision.logistic_fit_converged(ones, labels, x)
            slope = 1.0
        elif method == "logistic":
            (intercept, slope), converged = evaluate_decision.logistic_fit_converged(
                np.hstack([ones, x[:, None]]), labels, np.zeros_like(x))
        else:
            raise ValueError(f"update {method!r} is not one of {ORIGINAL}, {', '.join(UPDATES)}")
    return {"method": method, "intercept": float(intercept), "slope": float(slope), "converged": bool(converged)}


def closed_test(labels: Sequence[int], probabilities: Sequence[float], alpha: float = CLOSED_TEST_ALPHA) -> dict:
    """Vergouwe et al. (2017): the original model against logistic recalibration (likelihood ratio, 2 df); if it
    differs, recalibration-in-the-large against logistic recalibration (1 df): the least extensive update the data
    support is 'original', 'intercept' or 'logistic'. Where the logistic fit does not converge, only the original
    and the intercept update are compared (1 df)."""
    fits = {method: fit_update(labels, probabilities, method) for method in (ORIGINAL, *UPDATES)}
    likelihood = {method: log_likelihood(labels, apply_update(probabilities, f["intercept"], f["slope"]))
                  for method, f in fits.items()}

    def test(simpler, fuller, df):
        statistic = max(0.0, 2 * (likelihood[fuller] - likelihood[simpler]))
        return {"null": simpler, "alternative": fuller, "df": df, "statistic": statistic,
                "p_value": float(stats.chi2.sf(statistic, df))}

    if not fits["logistic"]["converged"]:  # no logistic recalibration exists to test against: intercept or nothing
        tests = [test(ORIGINAL, "intercept", 1)]
        chosen = "intercept" if tests[0]["p_value"] < alpha else ORIGINAL
    else:
        tests = [test(ORIGINAL, "logistic", 2)]
        if tests[0]["p_value"] >= alpha:
            chosen = ORIGINAL
        else:
            tests.append(test("intercept", "logistic", 1))
            chosen = "logistic" if tests[1]["p_value"] < alpha else "intercept"
    return {"chosen": chosen, "alpha": alpha, "tests": tests, "log_likelihood": likelihood, "fits": fits}


def patient_folds(patients: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """A fold index per row, every patient's rows in one fold, patients dealt out at random."""
    unique, index = np.unique(np.asarray(patients), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of_patient = np.empty(len(unique), int)
    fold_of_patient[order] = np.arange(len(unique)) % folds
    return fold_of_patient[index]


def cross_validated_update(labels: Sequence[int], probabilities: Sequence[float], patients: Sequence[str],
                           method: str, seed: int, folds: int = CROSS_FIT_FOLDS) -> np.ndarray:
    """Each row's updated probability from an update fitted on the other patients' rows (folds over patients): the
    honest estimate of how the updated model calibrates on patients it was not fitted on. A fold whose fit does not
    converge (the other patients' outcomes separated) leaves its rows NaN: there is no update to judge them by."""
    fold = patient_folds(patients, min(folds, len(set(patients))), seed)
    return _fitted_on_the_others(labels, probabilities, fold, lambda y, p: fit_update(y, p, method), "converged",
                                 np.nan)


def _fitted_on_the_others(labels: Sequence[int], probabilities: Sequence[float], folds: Sequence[int], fit,
                          usable: str, unfitted: float | None) -> np.ndarray:
    """Each fold's probabilities through `fit` (-> intercept, slope and the flag `usable`) fitted on the other
    folds' rows; a fold whose fit is not usable gets `unfitted` (None: left as it was)."""
    labels, probabilities, folds = np.asarray(labels, int), np.asarray(probabilities, float), np.asarray(folds)
    result = probabilities.copy()
    for fold in np.unique(folds):
        fitted = fit(labels[folds != fold], probabilities[folds != fold])
        if fitted[usable]:
            result[folds == fold] = apply_update(probabilities[folds == fold], fitted["intercept"], fitted["slope"])
        elif unfitted is not None:
            result[folds == fold] = unfitted
    return result


# ---------------------------------------------------------------- recalibration at development
def development_recalibration(labels: Sequence[int], probabilities: Sequence[float]) -> dict[str, Any]:
    """Logistic recalibration fitted on out-of-fold predictions, for export to build into the served graph:
    {'applied', 'intercept', 'slope', 'reason', 'rows', 'deaths'}. Not applied (with the reason) when one outcome
    is missing, the predictions do not vary, the fit does not converge, or its slope is not positive (a slope <= 0
    would reverse or flatten the ranking: the predictions carry no usable signal for it)."""
    labels, probabilities = np.asarray(labels, int), np.asarray(probabilities, float)
    facts = {"rows": int(len(labels)), "deaths": int(labels.sum()), "intercept": None, "slope": None}
    x = evaluate_decision.logit(probabilities)
    if len(np.unique(labels)) < 2:
        return {**facts, "applied": False, "reason": "the out-of-fold predictions hold only one outcome"}
    if np.ptp(x) == 0:
        return {**facts, "applied": False, "reason": "the out-of-fold probabilities are all equal"}
    with np.errstate(all="ignore"):
        (intercept, slope), converged = evaluate_decision.logistic_fit_converged(
            np.column_stack([np.ones_like(x), x]), labels.astype(float), np.zeros_like(x))
    if not (converged and math.isfinite(intercept) and math.isfinite(slope)):
        return {**facts, "applied": False, "reason": "the logistic fit did not converge (outcomes separated by the "
                                                     "predictions, or too few deaths)"}
    facts.update(intercept=float(intercept), slope=float(slope))
    if slope <= 0:
        return {**facts, "applied": False,
                "reason": f"the fitted slope {slope:.3f} is not positive: the out-of-fold predictions "
                          f"({facts['deaths']} deaths in {facts['rows']} rows) do not support it"}
    return {**facts, "applied": True, "reason": f"fitted on {facts['rows']} out-of-fold predictions "
                                                f"({facts['deaths']} deaths)"}


def cross_fitted(labels: Sequence[int], probabilities: Sequence[float], folds: Sequence[int]) -> np.ndarray:
    """Each fold's probabilities recalibrated by `development_recalibration` fitted on the other folds' out-of-fold
    predictions (left as they are where that fit is not applied): the honest estimate of what export's
    recalibration does to rows it was not fitted on."""
    return _fitted_on_the_others(labels, probabilities, folds, development_recalibration, "applied", None)


# ---------------------------------------------------------------- case mix
def case_mix(rows: Sequence[Mapping[str, str]], labels: Sequence[int], age: np.ndarray,
             sex: np.ndarray) -> dict[str, Any]:
    """Images, patients, deaths, age, sex, views and missing values of ingest's example rows (`patientid`,
    `view`), with their labels and `clinical_baseline.admission_features`' age and sex: what a site compares."""
    labels = np.asarray(labels, int)
    patients = [row["patientid"] for row in rows]
    views: dict[str, int] = {}
    for row in rows:
        view = (row.get("view") or "").strip() or "missing"
        views[view] = views.get(view, 0) + 1
    known_age = age[np.isfinite(age)]
    return {
        "images": int(len(rows)), "patients": int(len(set(patients))),
        "images_of_deaths": int(labels.sum()),
        "patients_who_died": int(len({p for p, y in zip(patients, labels) if y == 1})),
        "death_rate_images": float(labels.mean()) if len(labels) else math.nan,
        "age_median": float(np.median(known_age)) if len(known_age) else None,
        "age_iqr": [float(q) for q in np.quantile(known_age, (0.25, 0.75))] if len(known_age) else None,
        "age_missing": int(np.sum(~np.isfinite(age))),
        "sex": {"male": int(np.sum(sex == 1.0)), "female": int(np.sum(sex == 0.0)),
                "missing": int(np.sum(~np.isfinite(sex)))},
        "views": dict(sorted(views.items())),
    }
