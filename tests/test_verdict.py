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


def paired(images: int, flips: int, keras_only: int, artifact_only: int):
    """Probabilities of Keras and a file on `images` decided images, the file flipping the first `flips` answers: of
    those, Keras is right on `keras_only`, the file on the next `artifact_only`, neither on the rest."""
    import numpy as np

    reference = np.tile([0.9, 0.1, 0.0], (images, 1))
    probabilities = reference.copy()
    probabilities[:flips] = [0.1, 0.9, 0.0]
    labels = np.zeros(images, dtype=np.int64)
    labels[keras_only : keras_only + artifact_only] = 1
    labels[keras_only + artifact_only : flips] = 2
    return probabilities, reference, labels


@pytest.mark.parametrize(("flips", "keras_only", "artifact_only", "passes_again"),
                         [(38, 0, 0, False), (26, 22, 4, False), (20, 10, 10, True)])
def test_the_searchs_second_draw_asks_for_room_under_each_bound(flips, keras_only, artifact_only, passes_again):
    """export's search judges a candidate on a second draw at its pessimistic rates: 99.24% agreement on 5,000 images
    PASSes verify but not again, as a 0.36-point accuracy loss (22 images against 4) does; a file with room under both bounds passes both."""
    from edgecnn.core.verdict import overall, paired_criteria

    data = paired(5000, flips, keras_only, artifact_only)
    assert overall(paired_criteria(*data, 0.99, 0.5)) is Decision.PASS
    assert (overall(paired_criteria(*data, 0.99, 0.5, second_draw=True)) is Decision.PASS) is passes_again


def test_candidates_chosen_on_a_second_draw_pass_other_images_far_more_often():
    """Why the search asks for the second draw: files whose true agreement lies near verify's 99% minimum, each judged
    on 5,000 validation images and then on 5,000 other test images. Of those chosen because they PASS on the validation
    images, about 85% PASS the test images; of those chosen because they PASS the second draw, over 95% do."""
    import numpy as np

    images, rng = 5000, np.random.default_rng(0)
    passes = {count: agreement_criterion(count, images, 0.99).decision is Decision.PASS for count in range(4700, images + 1)}
    again = {count: passes.get(round(proportion_bounds(count, images)[0] * images), False) for count in passes}
    chosen: dict[str, list[bool]] = {"plain": [], "second draw": []}
    for rate in rng.uniform(0.988, 0.997, 4000):
        validation, test = rng.binomial(images, rate, 2)
        for name, rule in (("plain", passes), ("second draw", again)):
            if rule[validation]:
                chosen[name].append(passes[test])
    assert np.mean(chosen["plain"]) < 0.90 and np.mean(chosen["second draw"]) > 0.95, {name: np.mean(value) for name, value in chosen.items()}
