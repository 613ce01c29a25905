"""Official weight files: where they are published and which local names mean the same network.

GPEN's generators are on the authors' OSS host; the detector and parser are facexlib's releases,
which are the same networks as GPEN's ``RetinaFace-R50.pth`` / ``ParseNet-latest.pth`` (identical
state-dict layouts), so either name is accepted. Sizes/hashes are not published, so downloads are
checked with a size floor that rejects an HTML error page saved under a model's name.
"""

from __future__ import annotations

from ..download import RemoteFile

_GPEN_HOST = "https://public-vigen-video.oss-cn-shanghai.aliyuncs.com/robin/models"
_FACEXLIB_RELEASES = "https://github.com/xinntao/facexlib/releases/download"

# Downloadable GPEN generators (1024/2048 are only on ModelScope, in another container format).
OFFICIAL_GENERATORS: dict[str, RemoteFile] = {
    "GPEN-BFR-512.pth": RemoteFile("GPEN-BFR-512.pth", f"{_GPEN_HOST}/GPEN-BFR-512.pth", min_size=100_000_000),
    "GPEN-BFR-256.pth": RemoteFile("GPEN-BFR-256.pth", f"{_GPEN_HOST}/GPEN-BFR-256.pth", min_size=30_000_000),
}

DETECTOR = RemoteFile(
    "detection_Resnet50_Final.pth", f"{_FACEXLIB_RELEASES}/v0.1.0/detection_Resnet50_Final.pth", min_size=50_000_000
)
PARSER = RemoteFile("parsing_parsenet.pth", f"{_FACEXLIB_RELEASES}/v0.2.2/parsing_parsenet.pth", min_size=20_000_000)

# Local names accepted for the helper networks, preferred first.
DETECTOR_NAMES = ("detection_Resnet50_Final.pth", "RetinaFace-R50.pth")
PARSER_NAMES = ("parsing_parsenet.pth", "ParseNet-latest.pth")

WEIGHTS_TERMS = (
    "GPEN weights are published by Alibaba DAMO for academic and non-commercial use only; "
    "the GPEN repository carries no licence."
)
