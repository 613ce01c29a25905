"""The governor's settings: defaults, validation, persistence and live reload.

One JSON file (``config.json`` in the state directory) holds the settings; instances that share
the state directory share it, and each reloads it when it changes. ``PATCH /governor/config``
validates a partial update against the table below, writes the file atomically and applies it
live. The admin token is write-only: it is never returned by the API.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1 << 20
UPLOAD_FORMATS = ("png", "jpeg", "bmp", "webp", "tiff", "gif")
DEFAULT_TRANSIENT = ("ConnectionError", "TimeoutError", "BrokenPipeError", "ClientError", "IncompleteRead")


def _setting(default: Any, doc: str, *, min: float | None = None, max: float | None = None,
             choices: tuple[str, ...] | None = None, secret: bool = False):
    meta = {"doc": doc, "min": min, "max": max, "choices": choices, "secret": secret}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class GovernorConfig:
    # -- admission --------------------------------------------------------------------------------
    max_pending: int = _setting(10000, "Most prompts waiting in the queue (all clients); 0 = no cap. "
                                "Past it POST /prompt answers 429 with Retry-After.", min=0)
    max_pending_per_client: int = _setting(2000, "Most prompts one client_id may have waiting; 0 = no cap.", min=0)
    max_prompt_bytes: int = _setting(16 * MiB, "Largest /prompt request body accepted (413 above).", min=1024)
    idempotency_ttl: float = _setting(86400.0, "Seconds an Idempotency-Key is remembered.", min=1)
    duplicate_window: float = _setting(0.0, "Reject the same prompt from the same client_id within this many "
                                       "seconds (409). 0 = off: ComfyUI's batch count sends identical prompts.",
                                       min=0)
    # -- scheduling -------------------------------------------------------------------------------
    aging_interval: float = _setting(600.0, "Every this many seconds of waiting raise a prompt one priority tier "
                                     "(low -> normal -> high), so low never starves. 0 = no aging.", min=0)
    max_concurrent: int = _setting(1, "Prompts running at once across every ComfyUI instance that shares the "
                                   "state directory (one GPU).", min=1, max=64)
    # -- timeouts ---------------------------------------------------------------------------------
    queue_timeout: float = _setting(300.0, "Seconds a high or normal priority prompt may wait before it is failed "
                                    "with queue_timeout (X-Queue-Timeout can shorten it per request). The clock "
                                    "stops while the governor is paused. 0 = none.", min=0)
    queue_timeout_low: float = _setting(0.0, "The same for low priority (batches): 0 = they wait as long as it "
                                        "takes.", min=0)
    exec_timeout: float = _setting(0.0, "Seconds a prompt may run before it is interrupted (exec_timeout). "
                                   "0 = off.", min=0)
    exec_timeout_grace: float = _setting(30.0, "Seconds after an exec-timeout interrupt before the job is marked "
                                         "stuck.", min=0)
    # -- retries ----------------------------------------------------------------------------------
    retry_attempts: int = _setting(2, "Retries after a retryable failure (OOM, transient), so at most "
                                   "retry_attempts + 1 attempts. Also caps re-runs after a crash.", min=0, max=20)
    retry_backoff: float = _setting(2.0, "First retry delay in seconds; doubles each retry.", min=0)
    retry_backoff_max: float = _setting(60.0, "Longest retry delay in seconds.", min=0)
    retry_jitter: float = _setting(0.2, "Random +/- fraction applied to each retry delay.", min=0, max=1)
    retry_node_errors: bool = _setting(False, "Also retry ordinary node exceptions (not only OOM and transient).")
    transient_exceptions: list = _setting(DEFAULT_TRANSIENT, "Exception type names (last dotted part) treated as "
                                          "transient and retried.")
    # -- memory gate ------------------------------------------------------------------------------
    memory_gate: bool = _setting(True, "Check free (V)RAM before each dispatch.")
    max_used_fraction: float = _setting(0.80, "Start a prompt only while used/total memory is at most this.",
                                        min=0.01, max=1.0)
    min_free_bytes: int = _setting(0, "Start a prompt only while at least this many bytes are free.", min=0)
    learned_margin: float = _setting(0.2, "Margin on a workflow's learned peak memory: free memory must cover "
                                     "peak * (1 + margin).", min=0, max=10)
    max_gate_wait: float = _setting(600.0, "Seconds a prompt may wait for memory; then gate_timeout_action. "
                                    "0 = wait forever.", min=0)
    gate_timeout_action: str = _setting("run", "What happens after max_gate_wait: run the prompt anyway, or fail "
                                        "it with memory_gate_timeout.", choices=("run", "fail"))
    # -- uploads ----------------------------------------------------------------------------------
    upload_max_bytes: int = _setting(20 * MiB, "Largest file accepted by /upload/image, /upload/mask and "
                                     "/api/assets.", min=1)
    upload_max_pixels: int = _setting(80_000_000, "Largest width*height accepted for uploads (decompression "
                                      "bombs).", min=1)
    upload_formats: list = _setting(("png", "jpeg", "bmp", "webp", "tiff"), "Image formats accepted for uploads, "
                                    f"from {', '.join(UPLOAD_FORMATS)}.", choices=UPLOAD_FORMATS)
    # -- housekeeping -----------------------------------------------------------------------------
    event_throttle: float = _setting(0.5, "Least seconds between two governor.queue position updates.",
                                     min=0.05, max=60)
    guard_core_routes: str = _setting("auto", "Restrict ComfyUI's own POST /queue delete and clear, POST /history, "
                                      "POST /interrupt and the /api/jobs cancel routes to admins and each job's "
                                      "owner, and hide other clients' prompts in GET /queue, /history and "
                                      "/api/jobs. auto = on when an admin token is set; use on (with a token) on "
                                      "shared servers.", choices=("auto", "on", "off"))
    history_retention: int = _setting(10000, "Finished job records kept in the governor's store.", min=100)
    admin_token: str | None = _setting(None, "Token for admin actions (Authorization: Bearer ...). Unset: admin "
                                       "actions are allowed from loopback only. GOVERNOR_ADMIN_TOKEN overrides it.",
                                       secret=True)
    # -- cluster mode -----------------------------------------------------------------------------
    redis_url: str | None = _setting(None, "Redis URL of the shared queue (cluster mode), e.g. "
                                     "redis://10.0.0.5:6379/0; GOVERNOR_REDIS_URL overrides it. Takes effect "
                                     "at the next start. Unset: single-server mode.", secret=True)

    # ---------------------------------------------------------------------------------------------
    def public(self) -> dict[str, Any]:
        """Settings as the API shows them (secrets replaced by whether they are set)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"]:
                out[f.name + "_set"] = bool(value)
            else:
                out[f.name] = list(value) if isinstance(value, (list, tuple)) else value
        return out

    def to_file(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class ConfigError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def setting_docs() -> list[dict[str, Any]]:
    return [{"name": f.name, "default": f.default if f.default is not dataclasses.MISSING else f.default_factory(),
             **{k: v for k, v in f.metadata.items() if v not in (None, False)}}
            for f in dataclasses.fields(GovernorConfig)]


_FIELDS = {f.name: f for f in dataclasses.fields(GovernorConfig)}


def _coerce(name: str, value: Any) -> Any:
    f = _FIELDS[name]
    meta = f.metadata
    kind = f.type
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        if kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("must be a whole number")
            value = int(value)
        else:
            value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("must be finite")
        if meta["min"] is not None and value < meta["min"]:
            raise ValueError(f"must be >= {meta['min']}")
        if meta["max"] is not None and value > meta["max"]:
            raise ValueError(f"must be <= {meta['max']}")
        return value
    if kind == "list":
        if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value):
            raise ValueError("must be a list of short strings")
        if meta["choices"]:
            bad = [v for v in value if v not in meta["choices"]]
            if bad:
                raise ValueError(f"unknown values {bad}; choose from {list(meta['choices'])}")
        return list(dict.fromkeys(value))
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if meta["choices"] and value not in meta["choices"]:
            raise ValueError(f"must be one of {list(meta['choices'])}")
        return value
    if kind == "str | None":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 500:
            raise ValueError("must be a string (at most 500 characters) or null")
        return value
    raise ValueError(f"unsupported setting type {kind}")


def apply_patch(config: GovernorConfig, patch: Any) -> GovernorConfig:
    """A new config with ``patch`` applied; raises ConfigError naming every bad key."""
    if not isinstance(patch, dict):
        raise ConfigError({"body": "must be a JSON object of settings"})
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for name, value in patch.items():
        if name not in _FIELDS:
            errors[name] = "unknown setting"
            continue
        try:
            changes[name] = _coerce(name, value)
        except ValueError as e:
            errors[name] = str(e)
    if errors:
        raise ConfigError(errors)
    return dataclasses.replace(config, **changes)


class ConfigFile:
    """The persisted settings, with change detection so instances sharing the file stay in step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None

    def load(self) -> GovernorConfig:
        config = GovernorConfig()
        try:
            raw = json.loads(self.path.read_text())
            stamp = self._current_stamp()
        except FileNotFoundError:
            self._stamp = None
            return config
        except (OSError, ValueError):
            return config  # a torn or hand-broken file: keep defaults rather than refuse to start
        known = {k: v for k, v in raw.items() if k in _FIELDS} if isinstance(raw, dict) else {}
        try:
            config = apply_patch(config, known)
        except ConfigError:
            good = {}
            for k, v in known.items():
                try:
                    apply_patch(GovernorConfig(), {k: v})
                    good[k] = v
                except ConfigError:
                    pass
            config = apply_patch(config, good)
        self._stamp = stamp
        return config

    def changed(self) -> bool:
        try:
            return self._current_stamp() != self._stamp
        except FileNotFoundError:
            return self._stamp is not None

    def save(self, config: GovernorConfig) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(config.to_file(), f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
        self._stamp = self._current_stamp()

    def _current_stamp(self) -> tuple[int, int]:
        st = self.path.stat()
        return (st.st_mtime_ns, st.st_size)


def effective_admin_token(config: GovernorConfig) -> str | None:
    return os.environ.get("GOVERNOR_ADMIN_TOKEN") or config.admin_token
