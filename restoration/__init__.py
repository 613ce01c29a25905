"""Plain-torch model code (architectures, pipelines) and model-file handling for the nodes.

Nothing here imports ComfyUI: node classes in ``nodes/`` adapt it to ComfyUI types.
"""
