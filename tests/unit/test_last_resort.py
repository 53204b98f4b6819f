"""Auto's keep test for a last-resort correction (AdaRound, QAT): no measure of fidelity to fp32 may fall."""
from __future__ import annotations

from dataclasses import replace

import pytest

from edgeres.quantize.last_resort import FIDELITY, _fell, _verdict
from edgeres.quantize.search import Score

BEFORE = Score(images=100, agreement=94.0, cosine=0.99385, snr_db=20.2, top1=70.0, delta_top1=-1.0)


def test_a_correction_that_raises_cosine_but_flips_predictions_and_lowers_snr_is_not_kept():
    """The DenseNet-121 case: QAT raised the slice's cosine while agreement and SNR fell."""
    after = replace(BEFORE, agreement=93.0, cosine=0.99492, snr_db=15.4)
    fell = _fell(BEFORE, after)
    assert fell == ["agreement", "snr_db"]
    out = {"kept": not fell, "fell": fell}
    assert _verdict(out, "the post-training model") == "; agreement and snr_db fell: kept the post-training model"


@pytest.mark.parametrize("measure", FIDELITY)
def test_any_one_measure_falling_is_enough_to_drop_it(measure):
    after = replace(BEFORE, cosine=0.999, agreement=99.0, snr_db=30.0)
    after = replace(after, **{measure: getattr(BEFORE, measure) - 1e-6})
    assert _fell(BEFORE, after) == [measure]


def test_no_worse_on_every_measure_is_kept_ties_included_and_the_label_score_does_not_decide():
    assert _fell(BEFORE, BEFORE) == []
    better = replace(BEFORE, cosine=0.995, snr_db=21.0, top1=60.0, delta_top1=-11.0)  # fixes fewer of fp32's mistakes
    assert _fell(BEFORE, better) == []
    assert _verdict({"kept": True, "fell": []}, "rounding to nearest") == ""
