"""Chunked batch execution with OOM halving (plain Python, fake OOMs)."""

from __future__ import annotations

import pytest
import torch
from restoration_governor.restoration.batching import is_out_of_memory, run_in_chunks


def test_runs_every_item_once_in_order_and_reports_progress():
    seen, progress = [], []
    chunk = run_in_chunks(10, lambda s, e: seen.append((s, e)), chunk_size=4, after_chunk=progress.append)
    assert seen == [(0, 4), (4, 8), (8, 10)]
    assert progress == [4, 8, 10]
    assert chunk == 4


def test_halves_on_oom_and_keeps_the_smaller_chunk():
    calls, ooms = [], []

    def run(s, e):
        calls.append((s, e))
        if e - s > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    assert run_in_chunks(8, run, chunk_size=8, on_oom=ooms.append) == 2
    assert ooms == [4, 2]
    assert calls == [(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8)]


def test_a_single_item_that_does_not_fit_raises():
    def run(s, e):
        raise RuntimeError("CUDA error: out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_in_chunks(3, run, chunk_size=2)


def test_other_errors_and_interrupts_propagate_at_once():
    calls = []

    def run(s, e):
        calls.append((s, e))
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        run_in_chunks(4, run, chunk_size=4)
    assert calls == [(0, 4)]

    class Interrupted(Exception):
        pass

    def interrupt():
        raise Interrupted

    with pytest.raises(Interrupted):
        run_in_chunks(4, lambda s, e: None, chunk_size=1, before_chunk=interrupt)


def test_is_out_of_memory():
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
