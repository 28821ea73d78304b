"""Weights as typed in the Combine boxes."""

import pytest

from app.adapter_mix import weights_of
from studio.errors import StudioError


def test_weights_are_read_in_order_and_default_to_equal_shares():
    assert weights_of("0.5, -1;2", 3) == [0.5, -1.0, 2.0]
    assert weights_of("  ", 4) == [0.25] * 4
    with pytest.raises(StudioError, match="are not numbers"):
        weights_of("half, half", 2)
