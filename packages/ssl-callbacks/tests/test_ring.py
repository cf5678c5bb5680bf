import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssl_callbacks._ring import RingBuffer


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 9), sizes=st.lists(st.integers(1, 20), max_size=8))
def test_ring_keeps_last_rows_oldest_first(length, sizes):
    ring = RingBuffer(length)
    pushed = []
    start = 0
    for b in sizes:
        rows = torch.arange(start, start + b, dtype=torch.float32)[:, None].repeat(1, 3)
        start += b
        ring.push(rows)
        pushed.append(rows)
        everything = torch.cat(pushed)
        expected = everything[-length:]
        assert torch.equal(ring.get(), expected)
        assert len(ring) == expected.shape[0]
        assert torch.equal(ring.get(last=2), everything[-min(2, length) :])
    if not sizes:
        assert ring.get().shape == (0, 0)


def test_state_round_trip_is_exact():
    ring = RingBuffer(5)
    ring.push(torch.randn(3, 4))
    ring.push(torch.randn(4, 4))  # wrapped: pointer in the middle
    other = RingBuffer(5)
    other.load(ring.state())
    assert torch.equal(other.get(), ring.get())
    new = torch.randn(2, 4)
    ring.push(new)
    other.push(new)
    assert torch.equal(other.get(), ring.get())


def test_dtype_and_detach():
    ring = RingBuffer(4, dtype=torch.float32)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    ring.push(x)
    assert ring.get().dtype == torch.float32
    assert not ring.get().requires_grad


def test_dim_mismatch_error_names_both_shapes():
    ring = RingBuffer(4, row_shape=(8,), name="queue 'embedding'")
    with pytest.raises(ValueError, match=r"queue 'embedding'.*\[2, 5\].*\[8\]"):
        ring.push(torch.randn(2, 5))


def test_bad_length():
    with pytest.raises(ValueError, match="queue_length must be >= 1"):
        RingBuffer(0)
