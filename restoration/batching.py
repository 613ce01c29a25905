"""Run a batch through a model in chunks that fit, halving the chunk on out-of-memory.

This is the pattern ComfyUI's upscale node uses for tiles, applied to batch chunks: try the
current chunk size, on OOM free the cache, halve and retry the same range; give up only when a
single item does not fit. Progress and interrupt checks run between chunks.
"""

from __future__ import annotations

from collections.abc import Callable


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA / MPS / XPU out-of-memory errors (torch raises several types for them)."""
    import torch

    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_in_chunks(
    total: int,
    run_chunk: Callable[[int, int], None],
    *,
    chunk_size: int,
    before_chunk: Callable[[], None] | None = None,
    after_chunk: Callable[[int], None] | None = None,
    on_oom: Callable[[int], None] | None = None,
    is_oom: Callable[[BaseException], bool] = is_out_of_memory,
) -> int:
    """Call ``run_chunk(start, end)`` over ``range(total)``; return the chunk size that worked.

    ``before_chunk`` runs before every attempt (raise there to stop, e.g. on interrupt),
    ``after_chunk(done)`` after each finished chunk with the number of items done so far, and
    ``on_oom(new_chunk_size)`` after an OOM, before the retry (free caches there).
    """
    if total <= 0:
        return max(1, chunk_size)
    chunk = max(1, min(chunk_size, total))
    start = 0
    while start < total:
        if before_chunk is not None:
            before_chunk()
        end = min(start + chunk, total)
        try:
            run_chunk(start, end)
        except Exception as error:
            if not is_oom(error) or chunk == 1:
                raise
            chunk = max(1, chunk // 2)
            if on_oom is not None:
                on_oom(chunk)
            continue
        start = end
        if after_chunk is not None:
            after_chunk(start)
    return chunk
