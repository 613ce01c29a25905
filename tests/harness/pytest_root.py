"""A pytest plugin (loaded with ``-p`` from pyproject.toml): collect the checkout's root as a plain folder.

The root holds the pack's ``__init__.py`` (ComfyUI imports the folder as a package), so pytest would
treat the root as a package and import that file under the checkout folder's name, which fails for
names like ``tmp.Ab12``. Unit tests reach the pack through the ``restoration_governor`` alias
instead (tests/conftest.py). A plugin, not a conftest: a conftest under tests/ has no say over its
parent folder.
"""

from __future__ import annotations

import pytest

from .paths import REPO_ROOT


def pytest_collect_directory(path, parent):
    if path == REPO_ROOT:
        return pytest.Dir.from_parent(parent, path=path)
    return None
