"""The batch client behind ``restore.py``: restores folders of scans through a governed ComfyUI server.

Plain HTTP only (aiohttp, Pillow, numpy, tqdm): it imports neither torch nor ComfyUI, so it runs with
any Python >= 3.10 that has the pack's requirements. ``restore.py`` at the pack root is its entry
point; every module here imports its siblings relatively, so the package works both as the
top-level ``batch`` (when ``restore.py`` runs as a script) and inside the pack.
"""
