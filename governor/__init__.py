"""The queue governor.

Everything in this package except :mod:`.comfy_adapter` is plain Python that imports nothing from
ComfyUI, so scheduling, policies and the store are unit-testable on their own. The adapter is the
one place that binds them to ``PromptServer.instance``.
"""

__version__ = "0.1.0"
