"""Read a GPEN generator file, infer its configuration from the tensors, and load it strictly.

The released files are plain state dicts whose layout fully determines the constructor: the number
of encoder stages gives the size, the 4×4 constant gives ``narrow`` and the first encoder conv gives
``channel_multiplier``. Anything that is not exactly one of the released configurations — a missing
or extra tensor, a wrong shape, another architecture — is refused with a message naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch

from ..errors import short_type_name
from ..weights import GPEN as GPEN_FAMILY
from ..weights import WeightFileError, missing_and_unexpected, read_weights, wrong_family
from .network import GPEN, RELEASED_CONFIGS, GPENConfig

_ENCODER_KEY = re.compile(r"^ecd(\d+)\.")
_MAPPING_KEY = re.compile(r"^generator\.style\.(\d+)\.weight$")
# channels[size] = int(width_at_size * channel_multiplier * narrow)
_WIDTH_AT_SIZE = {256: 64, 512: 32, 1024: 16, 2048: 8}
_MAX_LISTED = 6


@short_type_name
class GPENCheckpointError(WeightFileError):
    """The file is not a GPEN generator we can load; the message says which file and why."""


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a weights file (:func:`restoration.weights.read_weights`; a training checkpoint's
    ``g_ema``). Not memory-mapped: the tensors are assigned to the model, and a mapped file would stay
    open (and undeletable on Windows) while the model lives."""
    return read_weights(path, error=GPENCheckpointError)


def infer_config(state_dict: Mapping[str, torch.Tensor], name: str = "checkpoint") -> GPENConfig:
    """The released configuration this state dict was saved from, or :class:`GPENCheckpointError`."""
    other = wrong_family(name, state_dict, GPEN_FAMILY, GPENCheckpointError)
    if other is not None:
        raise other
    required = ("ecd0.0.0.weight", "generator.input.input", "final_linear.0.weight", "generator.style.1.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        sample = ", ".join(list(state_dict)[:4])
        raise GPENCheckpointError(
            f"{name} is not a GPEN generator: it has no {', '.join(missing)} (its first keys are {sample}). "
            "GPEN files are the GPEN-BFR-*.pth releases; ONNX exports and other face models are not supported here."
        )
    stages = {int(m.group(1)) for k in state_dict if (m := _ENCODER_KEY.match(k))}
    n_stages = max(stages) + 1
    size = 2 ** (n_stages + 1)
    if size not in _WIDTH_AT_SIZE or stages != set(range(n_stages)):
        raise GPENCheckpointError(
            f"{name}: its {n_stages} encoder stages mean a {size}px GPEN; only {sorted(RELEASED_CONFIGS)} exist"
        )
    narrow = state_dict["generator.input.input"].shape[1] / 512
    stem_width = state_dict["ecd0.0.0.weight"].shape[0]
    multiplier = stem_width / (_WIDTH_AT_SIZE[size] * narrow) if narrow else 0.0
    style_dim = state_dict["generator.style.1.weight"].shape[0]
    n_mlp = len([k for k in state_dict if _MAPPING_KEY.match(k)])
    expected = RELEASED_CONFIGS[size]
    found = (multiplier, narrow, style_dim, n_mlp)
    wanted = (expected.channel_multiplier, expected.narrow, expected.style_dim, expected.n_mlp)
    if any(abs(a - b) > 1e-6 for a, b in zip(found, wanted, strict=True)):
        raise GPENCheckpointError(
            f"{name} matches no released GPEN configuration: as a {size}px GPEN it has channel_multiplier "
            f"{multiplier:g}, narrow {narrow:g}, style_dim {style_dim}, {n_mlp} mapping layers, but the released "
            f"{size}px generator has channel_multiplier {expected.channel_multiplier}, narrow {expected.narrow:g}, "
            f"style_dim {expected.style_dim}, {expected.n_mlp} mapping layers"
        )
    return expected


def check_layout(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Every tensor the model has (parameters and persistent buffers) and nothing else, at the right shape."""
    problems = missing_and_unexpected(model.state_dict(), state_dict, _MAX_LISTED)
    if problems:
        config = getattr(model, "config", None)
        what = config.describe() if isinstance(config, GPENConfig) else type(model).__name__
        raise GPENCheckpointError(f"{name} does not match the {what} layout: {problems}")


def load_generator(state_dict: Mapping[str, torch.Tensor], name: str = "checkpoint") -> GPEN:
    """Build the generator the state dict describes and load every tensor strictly (eval mode, CPU)."""
    config = infer_config(state_dict, name)
    with torch.device("meta"):
        model = GPEN(config)
    check_layout(model, state_dict, name)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model = model.float().eval()
    model.requires_grad_(False)
    return model


def load_generator_file(path: str | os.PathLike[str]) -> GPEN:
    return load_generator(read_state_dict(path), os.path.basename(os.fspath(path)))


_SIGNATURE_KEYS = (b"final_linear.0.weight", b"generator.to_rgb1.conv.weight")
_sniff_cache: dict[tuple[str, int, int], bool | None] = {}


def looks_like_gpen_file(path: str | os.PathLike[str]) -> bool | None:
    """Cheap content check (no tensor data read): True/False, or None when the format cannot be sniffed.

    ``.pth`` zip archives are judged by the key names in their small pickle, ``.safetensors`` by their
    JSON header. Results are cached per (path, size, mtime), so listing a big model folder stays fast.
    """
    path = os.fspath(path)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _sniff_cache:
        _sniff_cache[key] = _sniff(path)
    return _sniff_cache[key]


def _sniff(path: str) -> bool | None:
    import json
    import struct
    import zipfile

    try:
        if path.lower().endswith((".safetensors", ".sft")):
            with open(path, "rb") as f:
                (length,) = struct.unpack("<Q", f.read(8))
                if length > 50_000_000:
                    return None
                header = json.loads(f.read(length))
            return all(k.decode() in header for k in _SIGNATURE_KEYS)
        if not zipfile.is_zipfile(path):
            return None  # legacy pickle: judge by name
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pickles:
                return None
            info = archive.getinfo(pickles[0])
            if info.file_size > 20_000_000:
                return None
            data = archive.read(info)
        return all(k in data for k in _SIGNATURE_KEYS)
    except (OSError, ValueError, zipfile.BadZipFile, struct.error):
        return None
