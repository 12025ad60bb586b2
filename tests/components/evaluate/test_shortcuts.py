"""The shortcut audit's measures on generated data: each does what its rule says, and nothing else."""

import numpy as np

from components.evaluate import shortcuts


def _cohort(patients=60, images_per_patient=2, seed=0):
    """Rows of `patients` patients, each with a few images, a provenance flag and an outcome; 5 folds by patient."""
    rng = np.random.default_rng(seed)
    patient = np.repeat(np.arange(patients), images_per_patient).astype(str)
    flag = np.repeat(rng.integers(0, 2, patients), images_per_patient)
    label = np.repeat(rng.integers(0, 2, patients), images_per_patient)
    folds = np.repeat(np.arange(patients) % 5, images_per_patient)
    return patient, flag, label, folds, rng


def test_a_feature_that_carries_the_source_type_is_found_and_a_random_one_is_not():
    patient, flag, _, folds, rng = _cohort(patients=45)
    folds = folds % 3  # 3 folds x 13 C x 3 inner splits: the probe's whole rule, in seconds
    noise = rng.normal(size=(len(flag), 6))
    encoded = np.column_stack([flag + 0.5 * rng.normal(size=len(flag)), noise])  # not separable: lbfgs stops soon
    found, chosen = shortcuts.probe_out_of_fold(encoded, flag, patient, folds, "class_weights", seed=0)
    random, _ = shortcuts.probe_out_of_fold(noise, flag, patient, folds, "class_weights", seed=0)
    everything = np.arange(len(flag))
    assert shortcuts.mean_auc(flag, found)(everything) > 0.85
    assert abs(shortcuts.mean_auc(flag, random)(everything) - 0.5) < 0.15
    assert len(chosen) == 3


def test_a_stratum_with_one_outcome_is_listed_and_not_scored():
    patient, flag, label, _, rng = _cohort()
    label = np.where(flag == 1, 0, label)  # every image of flag 1 survived
    scores = rng.random((2, len(label)))
    one = shortcuts.within_stratum(label, scores, flag == 1, patient, resamples=50, seed=0)
    both = shortcuts.within_stratum(label, scores, flag == 0, patient, resamples=50, seed=0)
    assert one["status"] == shortcuts.ONE_OUTCOME and "estimate" not in one and one["patient_deaths"] == 0
    assert both["status"] == shortcuts.SCORED and both["low"] <= both["estimate"] <= both["high"]
    assert both["images"] == int(np.sum(flag == 0))


def test_the_site_death_rate_uses_the_training_folds_only():
    """Poisoning the held-out fold's labels leaves its site rates, and the baseline's predictions, unchanged."""
    patient, flag, label, folds, _ = _cohort()
    sites = np.where(flag == 1, "north", "south")
    held_out = folds == 0

    def predictions(labels):
        return shortcuts.baseline_out_of_fold(
            lambda training: shortcuts.site_death_rate(sites, patient, labels, training)[:, None], labels, folds)

    poisoned = np.where(held_out, 1 - label, label)
    rates = shortcuts.site_death_rate(sites, patient, label, ~held_out)
    np.testing.assert_array_equal(rates, shortcuts.site_death_rate(sites, patient, poisoned, ~held_out))
    np.testing.assert_allclose(predictions(label)[held_out], predictions(poisoned)[held_out])


def test_the_site_death_rate_is_shrunk_towards_the_training_rate_and_unseen_sites_get_it():
    patient = np.array(["a", "a", "b", "c", "d", "e"])
    sites = np.array(["x", "x", "x", "y", "y", "z"])
    label = np.array([1, 1, 0, 0, 0, 1])
    training = np.array([True, True, True, True, True, False])  # patients a-d; site z unseen
    r = 1 / 4  # one of the four training patients died (a, counted once for its two images)
    rates = shortcuts.site_death_rate(sites, patient, label, training)
    np.testing.assert_allclose(rates, [(1 + r) / 3, (1 + r) / 3, (1 + r) / 3, r / 3, r / 3, r])


def test_the_paired_gain_has_the_sign_of_the_better_ranker():
    patient, _, label, _, rng = _cohort(patients=80)
    good = label + 0.3 * rng.normal(size=len(label))
    poor = rng.normal(size=len(label))
    gain = shortcuts.paired_gain(label, poor, good, patient, resamples=200, seed=0)
    assert gain["difference"] > 0 and gain["low"] > 0
    loss = shortcuts.paired_gain(label, good, poor, patient, resamples=200, seed=0)
    assert loss["difference"] < 0 and loss["high"] < 0


def test_the_best_baseline_is_the_highest_ranker_and_the_first_on_a_tie():
    label = np.array([0, 0, 1, 1])
    baselines = {"flat": np.array([[0.5, 0.5, 0.5, 0.5]]), "right": np.array([[0.1, 0.2, 0.8, 0.9]]),
                 "also right": np.array([[0.2, 0.3, 0.7, 0.9]])}
    assert shortcuts.best_baseline(baselines, label) == "right"


def test_macro_auc_averages_the_one_vs_rest_rankings():
    classes = np.array(["a", "a", "b", "b", "c", "c"])
    perfect = {name: (classes == name).astype(float)[None, :] for name in "abc"}
    reversed_c = {**perfect, "c": 1 - perfect["c"]}
    everything = np.arange(len(classes))
    assert shortcuts.macro_auc(classes, perfect)(everything) == 1.0
    assert np.isclose(shortcuts.macro_auc(classes, reversed_c)(everything), 2 / 3)


def test_strata_name_every_value_of_every_kind():
    found = shortcuts.strata({"view": ["AP", "PA", "AP"], "site": ["x", "x", "x"]})
    assert [(kind, name) for kind, name, _ in found] == [("view", "AP"), ("view", "PA"), ("site", "x")]
    np.testing.assert_array_equal(found[0][2], [True, False, True])
