"""The statistics behind verify's three verdicts (core/verdict.py): exact bounds, computed without SciPy, that agree
with SciPy's; a one-image difference on 300 images is never a FAIL; real damage is; an undecidable split says how
many images would decide it."""

from __future__ import annotations

import pytest

from edgecnn.core.verdict import Decision, accuracy_criterion, agreement_criterion, proportion_bounds


@pytest.mark.parametrize(("successes", "trials"), [(997, 1000), (294, 300), (500, 500), (0, 10), (3, 7), (9950, 10000)])
def test_clopper_pearson_bounds_equal_scipys(successes, trials):
    from scipy.stats import beta

    low, high = proportion_bounds(successes, trials)
    assert low == pytest.approx(beta.ppf(0.05, successes, trials - successes + 1) if successes else 0.0, abs=1e-9)
    assert high == pytest.approx(beta.ppf(0.95, successes + 1, trials - successes) if successes < trials else 1.0, abs=1e-9)


@pytest.mark.parametrize(("keras_only", "artifact_only"), [(1, 0), (0, 1), (2, 1), (1, 1)])
def test_a_one_image_accuracy_difference_on_300_images_is_never_a_fail(keras_only, artifact_only):
    assert accuracy_criterion(keras_only, artifact_only, 300, 0.5).decision is not Decision.FAIL


def test_two_images_of_300_are_inconclusive_and_say_how_many_images_would_decide():
    """DenseNet121's tflite-int8 failed for 'accuracy drop 0.67 points': 2 images of 300."""
    criterion = accuracy_criterion(2, 0, 300, 0.5)
    assert criterion.decision is Decision.INCONCLUSIVE and criterion.images_needed is not None
    scaled = round(2 * criterion.images_needed / 300)
    assert accuracy_criterion(scaled, 0, criterion.images_needed, 0.5).decision is Decision.FAIL, "the same rate on that many images decides"
    assert "test images would decide it" in criterion.describe()


def test_agreement_is_judged_against_its_minimum_at_95_percent():
    assert agreement_criterion(294, 300, 0.99).decision is Decision.INCONCLUSIVE  # MobileNetV3Large's onnx-int8: 98.0% of 300
    assert agreement_criterion(9970, 10000, 0.99).decision is Decision.PASS
    assert agreement_criterion(9700, 10000, 0.99).decision is Decision.FAIL
    assert agreement_criterion(990, 1000, 0.99).images_needed is None, "a rate on the budget is never decided"


def test_real_damage_fails_even_on_a_small_split():
    assert accuracy_criterion(20, 2, 300, 0.5).decision is Decision.FAIL  # 6 points down
    assert agreement_criterion(270, 300, 0.99).decision is Decision.FAIL  # 90% agreement
