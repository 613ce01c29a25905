"""Build API-format prompts (``{node_id: {class_type, inputs}}``) without hand-writing JSON."""

from __future__ import annotations

import itertools
from typing import Any


class Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def node(self, class_type: str, **inputs: Any) -> Ref:
        node_id = str(next(self._ids))
        self.nodes[node_id] = {"class_type": class_type, "inputs": dict(inputs)}
        return Ref(node_id)

    def prompt(self) -> dict[str, dict[str, Any]]:
        return {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in self.nodes.items()}


class Ref(str):
    """A node id; ``ref.out(i)`` is the link ``[node_id, i]`` to its i-th output."""

    def out(self, index: int = 0) -> list[Any]:
        return [str(self), index]


def sleep_prompt(seconds: float = 0.2, tag: str = "", steps: int = 4) -> dict[str, Any]:
    g = Graph()
    g.node("RGTestSleep", seconds=seconds, tag=tag, steps=steps)
    return g.prompt()


def fail_prompt(key: str, failures: int, error: str = "oom", seconds: float = 0.0) -> dict[str, Any]:
    g = Graph()
    g.node("RGTestFailNTimes", key=key, failures=failures, error=error, seconds=seconds)
    return g.prompt()
