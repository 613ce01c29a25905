"""GPEN's memory plan: how many faces go through the networks at once, and what that costs.

Measured on CPU (bench/gpen.py): one face through the generator peaks at ~2.6–3 KiB per output
pixel at 256/512 px (rounded up to 4 KiB), the parser at 512 px at ~520 MiB per face. Batches of 4
give ~1.3× faces/s on CPU and more only cost memory; GPUs take up to 16.
"""

from __future__ import annotations

BYTES_PER_FACE_PIXEL = 4096
PARSER_BYTES_PER_FACE = 512 * 1024 * 1024
MAX_FACES_PER_CHUNK = {"cpu": 4}
MAX_FACES_PER_CHUNK_DEFAULT = 16
FREE_MEMORY_SHARE = 0.8  # of the memory free after loading the networks, what one chunk may plan to use


def working_memory(face_size: int, faces: int = 1, with_parser: bool = True) -> int:
    """Bytes ``faces`` faces of ``face_size`` px need in one chunk, beyond the weights."""
    per_face = face_size * face_size * BYTES_PER_FACE_PIXEL + (PARSER_BYTES_PER_FACE if with_parser else 0)
    return per_face * faces


def faces_per_chunk(face_size: int, free_bytes: int, device_type: str, faces_hint: int,
                    with_parser: bool = True) -> int:
    """Faces per chunk: at most the device's cap, what ``free_bytes`` holds and ``faces_hint``; ≥ 1."""
    cap = MAX_FACES_PER_CHUNK.get(device_type, MAX_FACES_PER_CHUNK_DEFAULT)
    fits = int(max(free_bytes, 0) * FREE_MEMORY_SHARE // working_memory(face_size, 1, with_parser))
    return max(1, min(cap, fits, max(faces_hint, 1)))
