"""Workflow fingerprints (governor/workflow_stats.py)."""

from __future__ import annotations

from restoration_governor.governor.workflow_stats import workflow_fingerprint


def test_workflow_fingerprint_ignores_seeds_and_text_but_not_settings():
    a = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 20}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}
    b = {"3": {"class_type": "KSampler", "inputs": {"seed": 99, "steps": 20}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a dog"}}}
    c = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 40}},
         "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}
    assert workflow_fingerprint(a) == workflow_fingerprint(b) != workflow_fingerprint(c)
