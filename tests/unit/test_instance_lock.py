"""The start-up check that keeps a second server away from a live server's port and queue."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from restoration_governor.governor.instance_lock import InstanceInUse, claim_instance, port_is_free, release_all


@pytest.fixture(autouse=True)
def _release():
    yield
    release_all()


def test_a_port_someone_listens_on_is_refused_with_the_remedy_first(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(InstanceInUse) as caught:
            claim_instance(tmp_path / "queue.sqlite3", "127.0.0.1", port, f"port{port}")
    assert str(caught.value).startswith(f"port {port} is in use — use `PORT=…`")
    assert isinstance(caught.value, SystemExit)
    assert not (tmp_path / "queue.sqlite3.lock").exists(), "refused before the store was touched"
    assert port_is_free("127.0.0.1", port), "free again once the listener closed"


def test_a_store_held_by_another_process_is_refused(tmp_path):
    store = tmp_path / "queue-port8188.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"lock = FileLock({str(store) + '.lock'!r}); lock.acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InstanceInUse, match=r"belongs to another running server \(instance 'port8188'\)"):
            claim_instance(store, "127.0.0.1", None, "port8188")
    finally:
        holder.kill()
        holder.wait(10)
    claim_instance(store, "127.0.0.1", None, "port8188")  # the OS dropped the dead holder's lock
    claim_instance(store, "127.0.0.1", None, "port8188")  # and this process may claim again
