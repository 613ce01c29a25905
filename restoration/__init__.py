"""Plain-torch model code (architectures, pipelines) and model-file handling for the nodes.

Nothing here imports ComfyUI: node classes in ``nodes/`` adapt it to ComfyUI types.

Shared by both model families: :mod:`.weights` (the one weight-file reader), :mod:`.channels` (IMAGE
channel counts), :mod:`.batching` (chunks that halve on out-of-memory), :mod:`.download`,
:mod:`.model_folders`; for photo files :mod:`.imageio` (decode any bit depth, 8/16-bit PNG) and
:mod:`.clipping` (is an input washed out). Each family folder (``ddcolor/``, ``gpen/``) has
``files.py`` (official downloads), ``loading.py`` (read, detect, build) and its pipeline.
"""
