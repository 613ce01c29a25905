"""Reading a DDColor checkpoint: detection and model building through spandrel.

spandrel + spandrel_extra_arches hold the architecture the ComfyUI ecosystem uses (its model code
is identical to the official one: bit-identical outputs, models.md 1.4). spandrel is used only to
detect and build the model; the pipeline calls the ``nn.Module`` itself, because spandrel's call
API runs at 256 px, one image at a time.

The loader is strict where the official one is lax: the pack's one weight reader
(:mod:`restoration.weights`) opens the release container (``{'params': sd}``), the two
``encoder.arch.head_cls`` keys some files carry are dropped, and then every key must fit, so a
truncated, foreign or mismatched file fails with a message that names the file and what is wrong
instead of running with missing weights; a GPEN / RetinaFace / ParseNet file is named as such, with
the folder it belongs in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import short_type_name
from ..weights import DDCOLOR, WeightFileError, read_weights, wrong_family
from .files import OFFICIAL_CHECKPOINTS

HEAD_CLS_KEYS = ("encoder.arch.head_cls.weight", "encoder.arch.head_cls.bias")
_SUPPORTED_ENCODERS = ("convnext-t", "convnext-s", "convnext-b", "convnext-l")


@short_type_name
class DDColorLoadError(WeightFileError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedDDColor:
    module: torch.nn.Module
    encoder: str
    path: Path
    parameters: int

    @property
    def description(self) -> str:
        return f"DDColor {self.encoder} ({self.parameters / 1e6:.1f} M parameters) from {self.path.name}"


def load_ddcolor(path: str | os.PathLike[str]) -> LoadedDDColor:
    """Read, check and build the DDColor model in ``path`` (on the CPU, eval mode, float32)."""
    path = Path(path)
    state_dict = read_state_dict(path)
    other = wrong_family(path.name, state_dict, DDCOLOR, DDColorLoadError)
    if other is not None:
        raise other
    arch = _ddcolor_arch()
    if not arch.detect(state_dict):
        raise DDColorLoadError(f"{path.name} is not a DDColor checkpoint: {_what_it_is(state_dict)}")
    try:
        with torch.random.fork_rng(devices=[]):  # the constructor runs a random dummy forward
            descriptor = arch.load(dict(state_dict))
    except RuntimeError as e:  # load_state_dict: missing / unexpected keys, shape mismatches
        raise DDColorLoadError(f"{path.name} looks like DDColor but its weights do not fit the architecture "
                               f"they describe ({_load_problems(str(e))}); the file is incomplete or a variant "
                               f"this node does not know") from e
    except (KeyError, ValueError) as e:
        raise DDColorLoadError(f"{path.name} looks like DDColor but is incomplete or unusual: {e}") from e
    module = descriptor.model
    encoder = next((t for t in descriptor.tags if t in _SUPPORTED_ENCODERS), "unknown")
    if getattr(module, "num_output_channels", None) != 2 or "MultiScaleColorDecoder" not in descriptor.tags:
        raise DDColorLoadError(f"{path.name} is a DDColor variant this node cannot run "
                               f"({', '.join(descriptor.tags)}): the released models predict 2 channels (ab) "
                               f"with the MultiScaleColorDecoder")
    module.eval().requires_grad_(False)
    return LoadedDDColor(module=module, encoder=encoder, path=path,
                         parameters=sum(p.numel() for p in module.parameters()))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``path`` (see :func:`restoration.weights.read_weights`), head_cls removed."""
    path = Path(path)
    state_dict = read_weights(path, remedy=_official_hint(path), mmap=True, error=DDColorLoadError)
    for key in HEAD_CLS_KEYS:
        state_dict.pop(key, None)
    return state_dict


def _ddcolor_arch():
    from spandrel_extra_arches.architectures.DDColor import DDColorArch

    return DDColorArch()


def _what_it_is(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the architecture spandrel recognises, or say which DDColor keys are missing."""
    from spandrel import MAIN_REGISTRY
    from spandrel_extra_arches import EXTRA_REGISTRY

    for registry in (MAIN_REGISTRY, EXTRA_REGISTRY):
        for support in registry.architectures("detection"):
            if support.architecture.id != "DDColor" and support.detect(state_dict):
                return f"it is a {support.architecture.name} model"
    if any(k.startswith(("encoder.arch.", "decoder.", "refine_net.")) for k in state_dict):
        expected = ("mean", "std", "refine_net.0.0.weight_orig", "encoder.arch.stages.3.0.gamma",
                    "encoder.arch.norm.weight")
        missing = [k for k in expected if k not in state_dict]
        return f"it has DDColor keys but is incomplete (missing {', '.join(missing) or 'encoder stages'})"
    sample = ", ".join(sorted(state_dict)[:3])
    return f"no known architecture matches its {len(state_dict)} tensors (e.g. {sample})"


def _load_problems(message: str) -> str:
    """A short summary of torch's load_state_dict error: counts and a few names of each kind."""
    parts = []
    for label, pattern in (("missing", r'Missing key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n|$)'),
                           ("unexpected", r'Unexpected key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n|$)')):
        found = re.search(pattern, message, flags=re.MULTILINE)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{len(keys)} {label} keys, e.g. {', '.join(keys[:3])}")
    mismatches = re.findall(r"size mismatch for ([^:]+): (.*)", message)
    if mismatches:
        name, detail = mismatches[0]
        parts.append(f"{len(mismatches)} size mismatch(es), e.g. {name}: {detail.strip()[:160]}")
    return "; ".join(parts) or _first_lines(message)


def _official_hint(path: Path) -> str:
    official = OFFICIAL_CHECKPOINTS.get(path.name)
    if official is None:
        return ""
    expected = f"{official.size:,} bytes" if official.size else f"at least {official.min_size:,} bytes"
    return f". The official {path.name} has {expected}: delete this file and it will be downloaded again"


def _first_lines(text: str, lines: int = 3) -> str:
    return " ".join(text.strip().splitlines()[:lines])[:400]
