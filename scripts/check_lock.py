"""Fail when dvc.lock is stale against the committed code, params or data.

Works on a clean clone, where the stage outputs under stages/ are absent:
`dvc status` then reports those outputs as "not in cache" and the stage
dependencies on them as "deleted", which says nothing about staleness and
is ignored. Anything
else it reports means that the committed metrics did not come from the
committed code: a dependency or parameter that changed, a command that
changed, a stage missing from dvc.lock, or a committed metrics or plots file
that differs from the one its stage wrote.

Usage: python scripts/check_lock.py  (from the project root)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# What dvc status says of an output that a clean clone simply does not have.
ABSENT = ("deleted", "not in cache")


def stale_entries(status: dict[str, object]) -> list[str]:
    """Human-readable reasons from `dvc status --json`, absent outputs ignored."""
    reasons: list[str] = []
    for stage, changes in status.items():
        if not isinstance(changes, list):
            continue
        for change in changes:
            if isinstance(change, str):
                # "changed command", "always changed", ...
                reasons.append(f"{stage}: {change}")
                continue
            for kind, entries in change.items():
                for path, state in entries.items():
                    if isinstance(state, dict):
                        for param, param_state in state.items():
                            reasons.append(
                                f"{stage}: {kind}: {path} {param} {param_state}"
                            )
                    elif state not in ABSENT:
                        reasons.append(f"{stage}: {kind}: {path} {state}")
    return reasons


def main() -> int:
    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run(
        [str(dvc), "status", "--json"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"dvc status failed:\n{result.stderr}", file=sys.stderr)
        return 1
    reasons = stale_entries(json.loads(result.stdout or "{}"))
    if reasons:
        print(
            "dvc.lock is stale; run `dvc repro` and commit dvc.lock, metrics/ and "
            "plots/ with the code:",
            file=sys.stderr,
        )
        for reason in reasons:
            print(f"  {reason}", file=sys.stderr)
        return 1
    print("dvc.lock matches the committed code, params and data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
