"""Where benchmarks leave their numbers for `benchmarks/report.py`: one JSON file per benchmark in
`benchmarks/results/`.

Convention: `benchmarks/results/<name>.json` is a JSON object. `record(name, **values)` merges `values` into
it (nested dicts are merged key by key, anything else is replaced), stamps `updated`, the command line and
the machine, and writes the file atomically under a lock, so several benchmarks (or processes) may record
into the same file. Two keys have a meaning for the report:

- `targets`: `{target_id: {"target": "<the issue's words>", "measured": "<number(s) and unit>", "met": bool}}`,
  the table of targets met / not met;
- `table`: `{row_name: {column: value, ...}}`, printed as a Markdown table in the benchmark's section.

Everything else is kept as given and shown as JSON. Usage, from any benchmark module:

    import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from _record import record
    record("rerank", tokens_per_s=123.4, targets={"rerank-2x": {"target": "...", "measured": "2.3x", "met": True}})
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(os.environ.get("HARNESS_BENCH_RESULTS") or Path(__file__).parent / "results")


def _merge(old: dict, new: dict) -> dict:
    merged = dict(old)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def machine() -> dict:
    """What the numbers were measured on."""
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


def record(name: str, **values) -> Path:
    """Merge `values` into `benchmarks/results/<name>.json`; returns the file's path."""
    from filelock import FileLock

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    import tempfile

    with FileLock(str(Path(tempfile.gettempdir()) / f"harness-bench-{name}.json.lock")):
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            current = {}
        current = _merge(current, _jsonable(values))
        current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        current["machine"] = machine()
        command = " ".join([Path(sys.executable).name, *sys.argv]) if sys.argv and sys.argv[0] else None
        if command:
            current.setdefault("commands", [])
            if command not in current["commands"]:
                current["commands"].append(command)
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    return path


def _jsonable(value):
    """Round floats (ratios and seconds need no 17 digits) and turn tuples/paths into JSON types."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def target(description: str, measured: str, met: bool) -> dict:
    """One entry of `targets`."""
    return {"target": description, "measured": measured, "met": bool(met)}
