"""`make run`'s argument handling and where a user's files live, checked by sourcing scripts/devenv.sh.

Sourcing defines the functions only (nothing is installed or started), so these run in milliseconds.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from harness.paths import REPO_ROOT

PLAN = """
source "$ROOT/scripts/devenv.sh"
has_cuda() { return 1; }
plan_run "$@"
python3 -c 'import json, sys; print(json.dumps({"port": sys.argv[1], "args": sys.argv[2:]}))' "$RUN_PORT" "${RUN_ARGS[@]}"
"""


def _plan(*args: str, **env: str) -> dict:
    out = subprocess.run(["bash", "-c", PLAN, "plan", *args], capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin", "ROOT": str(REPO_ROOT), **env})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


@pytest.mark.parametrize(("args", "env", "port"), [
    ((), {}, "8188"),
    ((), {"PORT": "8190"}, "8190"),
    (("--port", "8191"), {}, "8191"),
    (("--port=8192",), {"PORT": "8190"}, "8192"),
])
def test_the_port_reaches_comfyui_once_and_is_the_one_announced(args, env, port):
    plan = _plan(*args, **env)
    assert plan["port"] == port
    assert _values(plan["args"], "--port") == [port]
    assert [a for a in plan["args"] if a.startswith("--port")] == ["--port"]


def test_other_arguments_pass_through_and_listen_is_not_doubled():
    plan = _plan("--preview-method", "auto", "--listen", "0.0.0.0", LISTEN="127.0.0.1")
    assert plan["args"][-2:] == ["--preview-method", "auto"]
    assert _values(plan["args"], "--listen") == ["0.0.0.0"]
    assert "--cpu" in plan["args"]


def test_a_port_that_is_not_a_number_is_refused_with_a_message():
    out = subprocess.run(["bash", "-c", PLAN, "plan", "--port", "eighty"], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin", "ROOT": str(REPO_ROOT)})
    assert out.returncode == 2
    assert "PORT must be a number, not 'eighty'" in out.stderr


def test_user_data_lives_in_its_own_ignored_folder_outside_the_venv(tmp_path):
    plan = _plan()
    base = _values(plan["args"], "--base-directory")
    assert base == [str(REPO_ROOT / "comfyui-data")]
    assert _values(plan["args"], "--database-url") == [f"sqlite:///{REPO_ROOT / 'comfyui-data' / 'user' / 'comfyui.db'}"]
    for path in ("comfyui-data/models/ddcolor/ddcolor_modelscope.pth",
                 "comfyui-data/user/restoration-governor/queue-port8188.sqlite3"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO_ROOT, timeout=30)
        assert ignored.returncode == 0, f"{path} must be git-ignored"
    elsewhere = _plan(COMFYUI_DATA=str(tmp_path / "data"))
    assert _values(elsewhere["args"], "--base-directory") == [str(tmp_path / "data")]
