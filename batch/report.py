"""The batch report: ``restore-report.csv`` and ``restore-report.json`` in the output folder."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPORT_CSV = "restore-report.csv"
REPORT_JSON = "restore-report.json"
COLUMNS = ("file", "hash", "prompt_id", "status", "seconds", "error", "outputs")


@dataclass
class Outcome:
    """One input file's fate. ``status``: done | skipped (done by an earlier run) | failed | bad_input
    | interrupted. ``seconds``: wall time from submission (or re-attachment) to the result on disk."""

    file: str
    hash: str = ""
    prompt_id: str = ""
    status: str = "pending"
    seconds: float | None = None
    error: str = ""
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


def write_report(out_dir: Path, outcomes: list[Outcome], summary: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / REPORT_CSV, out_dir / REPORT_JSON
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for o in outcomes:
            row = asdict(o)
            row["outputs"] = ";".join(o.outputs)
            row["seconds"] = "" if o.seconds is None else f"{o.seconds:.1f}"
            writer.writerow(row)
    json_path.write_text(json.dumps({"summary": summary, "files": [asdict(o) for o in outcomes]}, indent=2),
                         encoding="utf-8")
    return csv_path, json_path
