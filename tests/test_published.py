"""Published values: inside and outside the band, relative bands, the record, bad input."""

import json
import math

import pytest

from circuitcheck.probes import evidence
from circuitcheck.probes.published import Published, published

WANG = "Wang et al. 2022, §3"


def test_a_value_inside_the_band_replicates_and_one_outside_does_not():
    inside = published(3.41, reported=3.56, band=0.3, source=WANG, what="IOI logit difference")
    outside = published(3.0, reported=3.56, band=0.3, source=WANG, what="IOI logit difference")
    assert inside.replicates and not outside.replicates
    assert inside.title.startswith("IOI logit difference replicates Wang et al. 2022")
    assert "does not replicate" in outside.title and "3 vs 3.56 ± 0.3" in outside.title
    assert outside.difference == pytest.approx(-0.56) and (outside.low, outside.high) == pytest.approx((3.26, 3.86))
    assert any("0.26 beyond the band" in note for note in outside.notes())
    # on the edge: within the band, whatever the float rounding of 3.56 + 0.3
    assert published(3.86, reported=3.56, band=0.3, source=WANG).replicates
    assert published(-3.86, reported=-3.56, band=0.3, source=WANG).replicates


def test_a_relative_band_is_a_share_of_the_reported_value():
    faithful = published(0.80, reported=0.87, band="10%", source="Wang et al. 2022, Table 2")
    assert faithful.tolerance == pytest.approx(0.087) and faithful.band == "10%" and faithful.replicates
    assert not published(0.78, reported=0.87, band="10%", source=WANG).replicates
    assert published(-0.8, reported=-0.87, band=" 10 % ", source=WANG).tolerance == pytest.approx(0.087)
    assert any("(10% of 0.87)" in note for note in faithful.notes())


def test_the_record_shows_both_numbers_and_the_citation():
    evidence.start()
    result = published(3.41, reported=3.56, band=0.3, source=WANG, what="logit difference", model="gpt2")
    assert evidence.stop() == [result]  # recorded as the test's evidence, with no model needed
    summary = result.summary()
    assert (summary["measured"], summary["reported"], summary["source"], summary["replicates"]) == \
        (3.41, 3.56, WANG, True)
    assert "3.41" in result.notes()[0] and "3.56" in result.notes()[0] and WANG in result.notes()[0]
    form = result.evidence()
    assert form["kind"] == "published" and form["model"] == "gpt2" and form["figures"][0]["type"] == "bar"
    json.dumps(form, allow_nan=False)
    assert list(result.df.columns) == ["what", "measured", "reported", "band", "low", "high", "difference",
                                       "replicates", "source"]
    assert isinstance(result, Published) and "replicates" in repr(result)


def test_a_nan_measurement_does_not_replicate():
    result = published(math.nan, reported=3.56, band=0.3, source=WANG)
    assert not result.replicates and any("measured value is nan" in note for note in result.notes())
    json.dumps(result.evidence(), allow_nan=False)


@pytest.mark.parametrize("kwargs, says", [
    (dict(band=-0.1), r"band=-0.1: a tolerance is a finite number of at least 0"),
    (dict(band=math.inf), "a tolerance is a finite number"),
    (dict(band="ten percent"), r"band='ten percent'.*band='10%'"),
    (dict(band="-5%"), r"band='-5%'"),
    (dict(band="10%", reported=0.0), "relative to reported=0"),
    (dict(source=""), r"source='': give the citation"),
    (dict(source=None), r"source=None: give the citation"),
    (dict(source="   "), "give the citation"),
    (dict(reported="3.56 or so"), "reported='3.56 or so' is not a number"),
    (dict(reported=math.nan), "reported=nan"),
    (dict(value=True), "value=True: give the measured number"),
])
def test_bad_input_is_refused_with_the_fix(kwargs, says):
    arguments = dict(value=3.4, reported=3.56, band=0.3, source=WANG) | kwargs
    value = arguments.pop("value")
    with pytest.raises(ValueError, match=says):
        published(value, **arguments)


def test_the_source_is_required():
    with pytest.raises(TypeError, match="source"):
        published(3.4, reported=3.56, band=0.3)


def test_a_number_from_another_model_is_a_comparison_not_a_replication():
    compared = published(0.014, reported=0.03, band=0.05, source="MIB 2025", model="smollm2-135m",
                         reported_on="GPT-2 small")
    assert compared.replicates and compared.verdict == "agrees"
    assert compared.title.startswith("Measured value agrees with MIB 2025 (reported on GPT-2 small)")
    assert compared.summary()["reported on"] == "GPT-2 small"
    far = published(0.5, reported=0.03, band=0.05, source="MIB 2025", reported_on="GPT-2 small")
    assert not far.replicates and far.verdict == "does not agree"
