"""RetinaFace ResNet-50 face detection (facexlib's network) the way GPEN runs it.

The network comes from facexlib (imported lazily: it pulls numba, filterpy, torchvision…); the
pre/post-processing is ours so it runs on whatever device ComfyUI put the network on and takes
ComfyUI's float RGB images directly: BGR×255 minus the (104, 117, 123) mean, images whose longer side
exceeds 1500 px are detected at 1000 px (GPEN's rule) and boxes/landmarks are scaled back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as nnf

from ..weights import DETECTOR, load_strictly, read_weights

BGR_MEAN = (104.0, 117.0, 123.0)
DOWNSCALE_ABOVE = 1500  # longer side (px) above which detection runs on a smaller copy
DETECT_SIDE = 1000  # longer side of that copy
NMS_IOU = 0.4
DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True)
class DetectedFace:
    """One face in image pixel coordinates."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5×2: left eye, right eye, nose, left mouth corner, right mouth corner

    @property
    def short_side(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0)


def build_detector_network(state_dict: Mapping[str, torch.Tensor], name: str = "detector") -> torch.nn.Module:
    """facexlib's RetinaFace-ResNet50 with ``state_dict`` loaded strictly (a ``module.`` prefix is dropped)."""
    import warnings

    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" from facexlib's ResNet-50 build
        warnings.simplefilter("ignore", UserWarning)
        from facexlib.detection.retinaface import RetinaFace

        with torch.device("meta"):  # skip ResNet-50's random init: every tensor comes from the file
            net = RetinaFace(network_name="resnet50", half=False, phase="test", device=torch.device("meta"))
    load_strictly(net, state_dict, name, DETECTOR, "a RetinaFace ResNet-50 detector")
    net.device = torch.device("cpu")  # facexlib's own bookkeeping; our detection code never reads it
    return net


def load_detector_file(path: str | os.PathLike[str]) -> torch.nn.Module:
    """The detector in ``path``; :class:`restoration.weights.WeightFileError` names a damaged or wrong file."""
    return build_detector_network(read_weights(path), os.path.basename(os.fspath(path)))


class FaceDetector:
    """Callable ``detect(image_hwc_rgb_0_1, threshold) -> list[DetectedFace]`` around the network."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network = network
        cfg = network.cfg
        self.min_sizes: list[list[int]] = cfg["min_sizes"]
        self.steps: list[int] = cfg["steps"]
        self.variance: tuple[float, float] = tuple(cfg["variance"])

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> list[DetectedFace]:
        device = next(self.network.parameters()).device
        h, w = image.shape[:2]
        x = image[..., :3].to(device=device, dtype=torch.float32).permute(2, 0, 1)[None]
        scale = 1.0
        if max(h, w) > DOWNSCALE_ABOVE:
            scale = DETECT_SIDE / max(h, w)
            size = (max(round(h * scale), 1), max(round(w * scale), 1))
            x = nnf.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = x.flip(1) * 255.0 - torch.tensor(BGR_MEAN, device=device)[None, :, None, None]
        loc, conf, landmarks = self.network(x)
        dh, dw = x.shape[-2:]
        priors = self._priors(dh, dw, device)
        scores = conf[0, :, 1]
        keep = scores > threshold
        if not bool(keep.any()):
            return []
        priors, loc, landmarks, scores = priors[keep], loc[0][keep], landmarks[0][keep], scores[keep]
        v0, v1 = self.variance
        centres = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
        sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * v1)
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
        points = priors[:, None, :2] + landmarks.view(-1, 5, 2) * v0 * priors[:, None, 2:]
        to_pixels = torch.tensor([dw, dh], device=device, dtype=torch.float32) / scale
        boxes = boxes * to_pixels.repeat(2)
        points = points * to_pixels
        order = torch.argsort(scores, descending=True, stable=True)
        boxes, points, scores = boxes[order], points[order], scores[order]
        from torchvision.ops import nms

        kept = nms(boxes.float(), scores.float(), NMS_IOU)
        return [
            DetectedFace(tuple(float(v) for v in boxes[i].tolist()), float(scores[i]),
                         points[i].double().cpu().numpy())
            for i in kept.tolist()
        ]

    def _priors(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Anchor (cx, cy, w, h) per prediction, normalised, in the network's output order."""
        levels = []
        for sizes, step in zip(self.min_sizes, self.steps, strict=True):
            fh, fw = math.ceil(h / step), math.ceil(w / step)
            cy, cx = torch.meshgrid((torch.arange(fh, dtype=torch.float32) + 0.5) * step / h,
                                    (torch.arange(fw, dtype=torch.float32) + 0.5) * step / w, indexing="ij")
            per_size = [torch.stack([cx, cy, torch.full_like(cx, s / w), torch.full_like(cy, s / h)], dim=-1)
                        for s in sizes]
            levels.append(torch.stack(per_size, dim=2).reshape(-1, 4))  # row-major cells, sizes innermost
        return torch.cat(levels).to(device)
