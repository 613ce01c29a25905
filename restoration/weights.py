"""One reader for every weight file of the pack (DDColor, GPEN, RetinaFace, ParseNet).

Reads ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` with safe unpickling (tensors only) and
``.safetensors`` / ``.sft``, unwraps the containers the releases and training scripts use
(``params``, ``params_ema``, ``g_ema``, ``state_dict``, ``model``), strips a ``module.`` prefix
(DataParallel) and says in words what is wrong with a file that cannot be used — always naming it,
and saying "delete it" when it is damaged. :func:`identify` names the model family of a state dict,
so a loader handed another family's file says which model it is and which folder it belongs in.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import short_type_name

CONTAINER_KEYS = ("params", "params_ema", "g_ema", "state_dict", "model")
PREFIXES = ("module.",)
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")


@short_type_name
class WeightFileError(ValueError):
    """A weight file that cannot be used; the message names the file, the problem and the remedy."""


@dataclass(frozen=True)
class Family:
    model: str  # what the file is, in words
    folder: str  # where the pack looks for it, under ComfyUI's models directory


DDCOLOR = Family("a DDColor colorization checkpoint", "models/ddcolor")
GPEN = Family("a GPEN face-restoration generator", "models/gpen")
DETECTOR = Family("a RetinaFace face detector (GPEN's detection network)", "models/facedetection")
PARSER = Family("a ParseNet face parser (GPEN's face-mask network)", "models/facedetection")


def read_weights(path: str | os.PathLike[str], *, remedy: str = "", mmap: bool = False,
                 error: type[WeightFileError] = WeightFileError) -> dict[str, torch.Tensor]:
    """The state dict in ``path``: container unwrapped, ``module.`` prefix stripped, on the CPU.

    ``remedy`` is appended to the message of a damaged file (e.g. the official size and "delete it
    to download it again"). ``mmap`` maps a zip-format ``.pth`` instead of reading it into RAM (for
    weights that are copied into a model, not assigned: a mapped file stays open). Raises ``error``
    (a :class:`WeightFileError`) for a missing, empty, truncated, unsafe or tensor-less file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist")
    size = path.stat().st_size
    damaged = remedy or (": delete it (under an official file name it is downloaded again on next use) or "
                          "replace it with a good copy")
    if size == 0:
        raise error(f"{path.name} is empty (0 bytes){damaged}")
    safetensors = path.suffix.lower() in SAFETENSORS_SUFFIXES
    with open(path, "rb") as f:
        head = f.read(16)
    if not safetensors and not head.startswith((b"PK\x03\x04", b"\x80")):  # zip archive / legacy pickle
        shown = head.decode("latin-1").encode("unicode_escape").decode()[:16]
        raise error(f"{path.name} is not a PyTorch weights file (it starts with '{shown}': an error page or "
                    f"another format saved under this name?){damaged}")
    try:
        if safetensors:
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = _torch_load(path, mmap)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "GLOBAL" in str(e):
            raise error(f"{path.name} holds Python objects other than tensors, which are not loaded for "
                        f"safety ({_unsupported(e)})") from e
        raise error(f"{path.name} is truncated or not a PyTorch weights file ({size:,} bytes){damaged}") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        raise error(f"{path.name} is truncated or not a PyTorch / safetensors weights file "
                              f"({size:,} bytes; {_first_line(e)}){damaged}") from e
    return unwrap(raw, path.name, error)


def _torch_load(path: Path, mmap: bool) -> object:
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise  # the legacy (non-zip) format cannot be mapped: read it below
    return torch.load(path, map_location="cpu", weights_only=True)


def unwrap(raw: object, name: str, error: type[WeightFileError] = WeightFileError) -> dict[str, torch.Tensor]:
    """The tensors of a loaded file: the first container key found is opened, one prefix stripped."""
    if isinstance(raw, Mapping):
        for key in CONTAINER_KEYS:
            inner = raw.get(key)
            if isinstance(inner, Mapping):
                raw = inner
                break
    if not isinstance(raw, Mapping) or not raw:
        kind = f"a dict with keys {sorted(map(str, raw))[:5]}" if isinstance(raw, Mapping) else type(raw).__name__
        raise error(f"{name} does not contain a model state dict (found {kind})")
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise error(f"{name} does not contain a model state dict: {bad[:3]!r} are not tensors")
    state_dict = dict(raw)
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def identify(state_dict: Mapping[str, torch.Tensor]) -> Family | None:
    """The pack's model family whose keys ``state_dict`` has, or None."""
    keys = set(state_dict)
    if "generator.input.input" in keys or "final_linear.0.weight" in keys:
        return GPEN
    if any(k.startswith("encoder.arch.") for k in keys) or any(k.startswith("refine_net.") for k in keys):
        return DDCOLOR
    if "body.conv1.weight" in keys and any(k.startswith("ClassHead.") for k in keys):
        return DETECTOR
    if any(k.startswith("out_mask_conv.") for k in keys):
        return PARSER
    return None


def wrong_family(name: str, state_dict: Mapping[str, torch.Tensor], expected: Family,
                 error: type[WeightFileError] = WeightFileError) -> WeightFileError | None:
    """The error for a file of another family handed to the ``expected`` family's loader, else None."""
    found = identify(state_dict)
    if found is None or found == expected:
        return None
    return error(f"{name} is {found.model}, not {expected.model}: move it to {found.folder} "
                           f"(this loader reads {expected.folder})")


def missing_and_unexpected(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor],
                           listed: int = 6) -> str:
    """'N missing tensor(s): a, b; M unexpected tensor(s): c; K wrong shape(s): d (…)', or '' if all fit."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    wrong = [f"{k} {tuple(found[k].shape)} (expected {tuple(v.shape)})"
             for k, v in expected.items() if k in found and found[k].shape != v.shape]
    parts = []
    for count, label, items in ((len(missing), "missing tensor(s)", missing),
                                (len(extra), "unexpected tensor(s)", extra),
                                (len(wrong), "wrong shape(s)", wrong)):
        if count:
            parts.append(f"{count} {label}: {', '.join(items[:listed])}")
    return "; ".join(parts)


def load_strictly(net: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], name: str, expected: Family,
                  what: str) -> torch.nn.Module:
    """Load ``state_dict`` into ``net`` (built on the meta device) whole, or raise naming the file.

    A ``module.`` prefix (DataParallel) is dropped; a file of another family raises with the folder it
    belongs in; missing, unexpected or mis-shaped tensors raise ``WeightFileError`` saying the file ``is
    not <what>`` and listing the first of each. Returns ``net`` in eval mode without gradients.
    """
    cleaned = {k.removeprefix("module."): v for k, v in state_dict.items()}
    other = wrong_family(name, cleaned, expected)
    if other is not None:
        raise other
    problems = missing_and_unexpected(net.state_dict(), cleaned)
    if problems:
        raise WeightFileError(f"{name} is not {what}: {problems}")
    net.load_state_dict(cleaned, strict=True, assign=True)
    net.requires_grad_(False)
    return net.eval()


def _unsupported(error: BaseException) -> str:
    found = [line.strip() for line in str(error).splitlines() if "Unsupported global" in line]
    return (found[0] if found else _first_line(error))[:300]


def _first_line(error: BaseException, limit: int = 300) -> str:
    """The error's first line, cut at a word boundary (with "…") when longer than ``limit``."""
    line = " ".join(str(error).strip().splitlines()[:1])
    return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0] + " …"
