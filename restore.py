#!/usr/bin/env python3
"""Restore folders of photos through a ComfyUI server with the restoration-governor pack.

    python restore.py scans/ --mode old-photo --out restored/

Needs only the pack's requirements (aiohttp, Pillow, numpy, tqdm) — no torch, no ComfyUI. See
docs/batch.md, or ``python restore.py --help``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the pack folder: ``batch`` is a top-level package here
    from batch.cli import main

    sys.exit(main())
