"""GPEN blind face restoration in plain PyTorch.

Written clean-room from the published description of the architecture (an encoder whose feature
maps are concatenated into a StyleGAN2-style generator) so that the released ``GPEN-BFR-*.pth``
files load strictly, plus the whole-photo face pipeline (detect, align, restore, parse, paste).
Nothing here imports ComfyUI; facexlib (detector / parser networks) is imported lazily.
"""
