"""common.stats.percentile: InfluxQL's nearest rank (rank = n × pct / 100 rounded half up)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.stats import percentile

HUNDRED = [float(i) for i in range(1, 101)]


def test_no_values_no_percentile():
    assert percentile([], 50) is None


def test_ranks_of_one_to_a_hundred():
    assert percentile(HUNDRED, 50) == 50.0
    assert percentile(HUNDRED, 99) == 99.0
    assert percentile(HUNDRED, 100) == 100.0
    assert percentile(reversed(HUNDRED), 90) == 90.0  # any order, any iterable


def test_the_rank_is_rounded_half_up_not_ceiled():
    ten = [float(i) for i in range(1, 11)]
    assert percentile(ten, 44) == 4.0  # rank 4.4 → 4 (the textbook ceil would give 5)
    assert percentile(ten, 45) == 5.0  # rank 4.5 → 5
    assert percentile(ten, 94) == 9.0  # rank 9.4 → 9
    assert percentile(ten, 95) == 10.0


def test_a_rank_that_rounds_to_zero_has_no_value():
    assert percentile([3.0, 1.0, 2.0, 4.0], 10) is None  # rank 0.4
    assert percentile([3.0, 1.0, 2.0, 4.0], 0) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 13) == 1.0  # rank 0.52


def test_a_single_sample_is_every_percentile_from_the_median_up():
    assert percentile([7.5], 50) == 7.5 and percentile([7.5], 99) == 7.5


@pytest.mark.parametrize("pct", [-1, 100.5, float("nan")])
def test_pct_outside_0_to_100_names_the_parameter(pct):
    with pytest.raises(ValueError, match="pct: must be between 0 and 100"):
        percentile([1.0], pct)


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
    st.floats(min_value=50, max_value=100),
    st.floats(min_value=50, max_value=100),
)
def test_a_percentile_is_a_sample_and_grows_with_pct(values, p, q):
    lo, hi = sorted((p, q))
    a, b = percentile(values, lo), percentile(values, hi)
    assert a in values and b in values  # never interpolated
    assert a <= b
    below = sum(v < a for v in values)
    assert below < len(values) * lo / 100 + 0.5  # no more than the rank's share lies below it
