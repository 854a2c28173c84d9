"""The whole DVC pipeline on a tiny synthetic recording set.

A temporary git repository gets this project's package and ``dvc.yaml``,
two small recordings and fast params; the tests then run what users run:
``dvc repro``, ``dvc metrics diff``, ``dvc exp run -S model=...``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import fcciq_rows, write_fcciq_csv

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow

FAST_PARAMS = {
    "model": "stl",
    "models": ["stl", "hardsharing"],
    "seed": 7,
    "seeds": 2,
    "data": {"dir": "data", "window": 6, "max_gap_s": 5.0},
    "graph": {"offsets": [1, 2], "directed": False},
    "train": {
        "epochs": 3,
        "patience": 2,
        "batch_size": 32,
        "threads": 1,
        "workers": 1,
    },
    "arch": {
        "stl": {"hidden": 8, "layers": 1, "tower_hidden": 4},
        "hardsharing": {"hidden": 8, "layers": 1, "tower_hidden": 4},
    },
    "profile": {"warmup": 2, "runs": 5, "throughput_batch": 64, "throughput_runs": 2},
}


def synthetic_recording(num_rows: int, seed: int) -> object:
    """A recording whose interference lowers SINR, so there is something to learn."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(num_rows) // 25 % 3 == 2).astype(int)
    sinr = 20 - 15 * labels + rng.normal(0, 1.5, num_rows)
    rsrp = -95 + np.cumsum(rng.normal(0, 0.3, num_rows))
    rsrq = -11 - 2 * labels + rng.normal(0, 0.3, num_rows)
    return fcciq_rows(
        num_rows,
        rsrp=np.round(rsrp, 2),
        rsrq=np.round(rsrq, 2),
        sinr=np.round(sinr, 2),
        labels=labels,
    )


def run(
    repo: Path, *command: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command in ``repo`` with this environment's python and dvc first."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        command, cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def write_params(repo: Path, **changes: object) -> None:
    params = {**FAST_PARAMS, **changes}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh project repository that has run ``dvc repro`` once."""
    repo = tmp_path_factory.mktemp("project")
    shutil.copytree(
        ROOT / "mtlnet", repo / "mtlnet", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    (repo / ".gitignore").write_text("__pycache__/\n/stages/\n")
    for i, name in enumerate(("lvl_a", "lvl_b")):
        write_fcciq_csv(repo / "data" / f"{name}.csv", synthetic_recording(400, i))
    write_params(repo)

    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "tests@example.invalid")
    run(repo, "git", "config", "user.name", "tests")
    run(repo, "dvc", "init", "-q")
    run(repo, "dvc", "config", "core.analytics", "false")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "pipeline")
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "first run")
    return repo


def restore(repo: Path) -> None:
    """Back to the committed first run, outputs included."""
    run(repo, "git", "reset", "-q", "--hard")
    # A failed `dvc exp run -S` can leave its params behind where git does not
    # look; write the committed ones back.
    write_params(repo)
    run(repo, "dvc", "checkout", "-q", "--force")


def read_json(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    return data


def numbers_only(tree: object) -> bool:
    if isinstance(tree, dict):
        return all(numbers_only(v) for v in tree.values())
    return isinstance(tree, int | float) and not isinstance(tree, bool)


def test_repro_writes_every_stage_output(repo: Path) -> None:
    for name in ("stl", "hardsharing"):
        assert (repo / "stages" / "train" / name / "seed_7.pt").is_file()
        assert (repo / "stages" / "train" / name / "seed_8.pt").is_file()
        for figure in ("forecast.png", "timeline.png", "confusion.png"):
            assert (repo / "plots" / "eval" / name / figure).stat().st_size > 1000
        assert (repo / "plots" / "train" / f"{name}.csv").is_file()
    for chart in ("detection.png", "rmse.png", "tradeoff.png", "table.md"):
        assert (repo / "plots" / "compare" / chart).is_file()
    assert (repo / "stages" / "export" / "model.pt").is_file()

    metrics = sorted(
        p.relative_to(repo).as_posix() for p in repo.glob("metrics/**/*.json")
    )
    assert metrics == [
        "metrics/baselines.json",
        "metrics/compare.json",
        "metrics/data.json",
        "metrics/eval/hardsharing.json",
        "metrics/eval/stl.json",
        "metrics/model.json",
        "metrics/profile/hardsharing.json",
        "metrics/profile/stl.json",
        "metrics/train/hardsharing.json",
        "metrics/train/stl.json",
    ]
    for path in metrics:
        assert numbers_only(read_json(repo / path)), path


def test_repro_metrics_carry_the_design_keys(repo: Path) -> None:
    evaluation = read_json(repo / "metrics" / "eval" / "stl.json")
    classification = evaluation["classification"]
    assert isinstance(classification, dict)
    assert {
        "accuracy",
        "balanced_accuracy",
        "precision",
        "recall",
        "f1",
        "auroc",
        "auprc",
        "loss",
    } <= set(classification)
    regression = evaluation["regression"]
    assert isinstance(regression, dict)
    assert {"rmse", "mae", "mse_scaled", "skill"} <= set(regression["SINR"])
    assert evaluation["runs"] == 2

    profile = read_json(repo / "metrics" / "profile" / "stl.json")
    assert {
        "params",
        "trainable_params",
        "flops",
        "size_mb",
        "latency_ms_p50",
        "latency_ms_p99",
        "throughput_windows_s",
        "train_time_s",
        "epoch_time_s",
    } <= set(profile)

    compare = read_json(repo / "metrics" / "compare.json")
    assert "delta_m" in compare["hardsharing"]  # type: ignore[operator]
    assert "delta_m" not in compare["stl"]  # type: ignore[operator]
    assert read_json(repo / "metrics" / "model.json")["architecture"] == 0


def test_second_repro_is_up_to_date(repo: Path) -> None:
    result = run(repo, "dvc", "status")
    assert "up to date" in result.stdout


def check_lock(directory: Path) -> subprocess.CompletedProcess[str]:
    return run(
        directory, sys.executable, str(ROOT / "scripts" / "check_lock.py"), check=False
    )


def test_the_lock_check_passes_on_a_clean_clone_without_outputs(
    repo: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run(repo, "git", "clone", "-q", str(repo), str(clone))

    result = check_lock(clone)

    assert result.returncode == 0, result.stderr
    assert not (clone / "stages").exists()


def test_the_lock_check_fails_on_a_clean_clone_after_a_code_change(
    repo: Path, tmp_path: Path
) -> None:
    clone = tmp_path / "clone"
    run(repo, "git", "clone", "-q", str(repo), str(clone))
    with (clone / "mtlnet" / "losses.py").open("a") as file:
        file.write("\n# a change the committed metrics did not come from\n")

    result = check_lock(clone)

    assert result.returncode == 1
    assert "train@stl: changed deps: mtlnet/losses.py modified" in result.stderr
    assert "prepare" not in result.stderr


def test_the_lock_check_fails_when_a_param_changed(repo: Path) -> None:
    write_params(repo, seeds=3)

    result = check_lock(repo)

    assert result.returncode == 1
    assert "seeds" in result.stderr
    restore(repo)


def test_plots_show_renders_every_declared_plot(repo: Path) -> None:
    result = run(repo, "dvc", "plots", "show", "--json")
    plots = json.loads(result.stdout)

    assert {
        "validation loss",
        "validation F1",
        "stl confusion",
        "hardsharing confusion",
        "test F1",
        "plots/compare/tradeoff.png",
    } <= set(plots["data"])
    # The tiny set trains two of the six models; only the others may be missing.
    errors = json.dumps(plots.get("errors", []))
    for present in ("plots/train/stl", "plots/eval/stl", "plots/compare"):
        assert present not in errors


def test_metrics_diff_shows_a_changed_param(repo: Path) -> None:
    write_params(repo, train={**FAST_PARAMS["train"], "lr": 0.01})  # type: ignore[dict-item]
    run(repo, "dvc", "repro")

    result = run(repo, "dvc", "metrics", "diff", "--json")
    diff = json.loads(result.stdout)

    assert "metrics/eval/stl.json" in diff
    assert "metrics/eval/hardsharing.json" in diff
    assert "metrics/data.json" not in diff
    restore(repo)


def test_exp_run_with_another_model_changes_model_metrics(repo: Path) -> None:
    result = run(repo, "dvc", "exp", "run", "-S", "model=hardsharing", "export")

    assert "Running stage 'export'" in result.stdout
    assert "Running stage 'train@" not in result.stdout
    assert read_json(repo / "metrics" / "model.json")["architecture"] == 1
    restore(repo)


def test_exp_run_with_an_unknown_model_names_the_allowed_values(repo: Path) -> None:
    result = run(repo, "dvc", "exp", "run", "-S", "model=ple", check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "model: 'ple' is not in models; allowed: stl, hardsharing" in output
    assert "Traceback" not in output
    restore(repo)


# Wall-clock figures differ between any two runs; everything else may not.
TIMING_KEYS = (
    "train_time_s",
    "epoch_time_s",
    "latency_ms_p50",
    "latency_ms_p99",
    "throughput_windows_s",
)


def without_timings(tree: object) -> object:
    if isinstance(tree, dict):
        return {k: without_timings(v) for k, v in tree.items() if k not in TIMING_KEYS}
    return tree


def test_a_forced_rerun_from_scratch_reproduces_every_metric(repo: Path) -> None:
    committed = {
        path.relative_to(repo): path.read_bytes()
        for path in repo.glob("metrics/**/*.json")
    }
    shutil.rmtree(repo / "stages")

    run(repo, "dvc", "repro", "--force")

    for path, before in committed.items():
        after = (repo / path).read_bytes()
        if path.parts[1] in ("data.json", "baselines.json", "eval"):
            assert after == before, f"{path} changed between two runs"
        else:
            assert without_timings(json.loads(after)) == without_timings(
                json.loads(before)
            ), f"{path} changed beyond its timings"
    for csv in repo.glob("plots/**/*.csv"):
        assert (
            run(repo, "git", "diff", "--quiet", "--", str(csv), check=False).returncode
            == 0
        ), csv
