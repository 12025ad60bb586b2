"""Can the probabilities be acted on: calibration slope and intercept, and decision curves.

Calibration slope and intercept are the logistic recalibration of the out-of-fold predictions
(Van Calster et al. 2019, "Calibration: the Achilles heel of predictive analytics"): the slope b of
logit P(died) = a + b * logit(p) (1 = ideal; below 1, predictions too extreme, as from overfitting on
few patients), and the intercept of logit P(died) = a + logit(p) with the slope held at 1
(calibration-in-the-large; 0 = ideal, negative = risks overestimated). Both are maximum-likelihood
fits by Newton's method; here they describe (`validation` fits the same models to recalibrate and update).

Decision curves (Vickers & Elkin 2006): at a threshold probability t, a clinician who treats every
case with p >= t (the project's decision rule, `common.decision`) gains
net benefit = TP/n - FP/n * t / (1 - t), against treat-all (prevalence - (1 - prevalence) * t/(1-t))
and treat-none (0). The `dcurves` package computes the same; it is not a dependency because its
`lifelines` requirement pins pandas below 3, which this stack does not run.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import special

from common.decision import called_died
from components.evaluate.outputs import DECISION_THRESHOLDS

_EPS = 1e-6


def logit(probabilities: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def logistic_fit_converged(design: np.ndarray, labels: np.ndarray, offset: np.ndarray,
                           iterations: int = 100) -> tuple[np.ndarray, bool]:
    """Maximum-likelihood coefficients of logit P(y) = offset + design @ beta (Newton-Raphson), and whether Newton's
    steps came to rest. A step that lowers the likelihood is halved until it does not (plain Newton overshoots from
    extreme offsets, e.g. probabilities near 0 or 1). Under separated outcomes the likelihood has no maximum, the
    coefficients grow without end and it does not converge."""
    def log_likelihood(beta):
        eta = offset + design @ beta
        return float(np.sum(labels * eta - np.logaddexp(0, eta)))

    beta = np.zeros(design.shape[1])
    current = log_likelihood(beta)
    for _ in range(iterations):
        mu = special.expit(offset + design @ beta)
        gradient = design.T @ (labels - mu)
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        step = np.linalg.solve(hessian + 1e-12 * np.eye(len(beta)), gradient)
        for _ in range(50):
            candidate = log_likelihood(beta + step)
            if candidate >= current - 1e-12:
                break
            step = step / 2
        beta, current = beta + step, max(candidate, current)
        if np.max(np.abs(step)) < 1e-10:
            return beta, True
    return beta, False


def calibration_slope_intercept(labels: Sequence[int], probabilities: Sequence[float]) -> dict[str, float]:
    """{'slope', 'intercept'} of the logistic recalibration; NaN when one class is missing or a fit does not
    converge (separated outcomes: no maximum-likelihood estimate exists)."""
    labels = np.asarray(labels, float)
    if len(np.unique(labels)) < 2:
        return {"slope": math.nan, "intercept": math.nan}
    x = logit(probabilities)
    ones = np.ones((len(x), 1))
    (_, slope), slope_converged = logistic_fit_converged(np.hstack([ones, x[:, None]]), labels, np.zeros_like(x))
    (intercept,), intercept_converged = logistic_fit_converged(ones, labels, x)
    return {"slope": float(slope) if slope_converged else math.nan,
            "intercept": float(intercept) if intercept_converged else math.nan}


def net_benefit(labels: Sequence[int], probabilities: Sequence[float], threshold: float) -> float:
    labels, probabilities = np.asarray(labels, bool), np.asarray(probabilities, float)
    treated = called_died(probabilities, threshold)
    n = len(labels)
    tp, fp = np.sum(treated & labels), np.sum(treated & ~labels)
    return float(tp / n - fp / n * threshold / (1 - threshold))


def decision_curve(labels: Sequence[int], probabilities: Sequence[float],
                   thresholds: Sequence[float] = DECISION_THRESHOLDS) -> dict[str, Any]:
    """Net benefit of the model, treat-all and treat-none at each threshold probability."""
    labels = np.asarray(labels, int)
    prevalence = float(labels.mean())
    rows = [{"threshold": float(t), "model": net_benefit(labels, probabilities, t),
             "treat_all": prevalence - (1 - prevalence) * t / (1 - t), "treat_none": 0.0} for t in thresholds]
    return {"prevalence": prevalence, "rows": rows,
            "thresholds_where_model_beats_both": [r["threshold"] for r in rows
                                                  if r["model"] > max(r["treat_all"], r["treat_none"])]}
