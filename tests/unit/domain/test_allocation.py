from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.capabilities.discount import allocate


@given(st.integers(0, 10**7), st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_allocation_is_exact_and_bounded(total, weights):
    shares = allocate(total, weights)
    assert len(shares) == len(weights)
    assert sum(shares) == (min(total, sum(weights)) if sum(weights) > 0 else 0)
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))
