"""The ``compare`` stage on hand-made evaluation and profile figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mtlnet.compare import compare
from mtlnet.errors import MtlnetError
from mtlnet.io import write_json

KPIS = ("RSRP", "RSRQ", "SINR")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = (
    "detection.png",
    "rmse.png",
    "params.png",
    "flops.png",
    "latency_ms_p50.png",
    "train_time_s.png",
    "tradeoff.png",
)


def evaluation(
    f1: tuple[float, float], rmse: dict[str, tuple[float, float]]
) -> dict[str, Any]:
    """An ``metrics/eval/<m>.json``: ``(mean, std)`` of F1 and each RMSE."""

    def tree(pick: int) -> dict[str, Any]:
        constant = 0.0 if pick else 0.7
        return {
            "classification": {
                "accuracy": constant,
                "balanced_accuracy": constant,
                "precision": constant,
                "recall": constant,
                "f1": f1[pick],
                "auroc": constant,
                "auprc": constant,
                "loss": constant,
                "tp": 3.0,
            },
            "regression": {
                **{
                    kpi: {
                        "rmse": rmse[kpi][pick],
                        "mae": constant,
                        "mse_scaled": constant,
                        "skill": constant,
                    }
                    for kpi in KPIS
                },
                "mse_scaled": constant,
            },
            "loss": {"total": constant},
        }

    return {**tree(0), "std": tree(1), "runs": 3}


def profile(params: int) -> dict[str, Any]:
    return {
        "params": params,
        "trainable_params": params,
        "flops": 2.5e6,
        "size_mb": 0.1,
        "latency_ms_p50": 0.8,
        "latency_ms_p99": 1.2,
        "throughput_windows_s": 5e4,
        "train_time_s": 30.0,
        "epoch_time_s": 1.5,
        "std": {"train_time_s": 2.0, "epoch_time_s": 0.1},
    }


EVALUATIONS = {
    "stl": evaluation(
        (0.5, 0.02), {"RSRP": (2.0, 0.3), "RSRQ": (1.0, 0.1), "SINR": (4.0, 0.1)}
    ),
    # F1 +20 % beyond both spreads; RSRP RMSE -25 % within them together
    # (0.5 < 0.3 + 0.3); SINR RMSE +25 % (worse) beyond them.
    "hardsharing": evaluation(
        (0.6, 0.03), {"RSRP": (1.5, 0.3), "RSRQ": (1.0, 0.1), "SINR": (5.0, 0.1)}
    ),
    # F1 -10 % within the spreads; RSRQ RMSE -20 % (better) beyond them.
    "mmoe": evaluation(
        (0.45, 0.1), {"RSRP": (2.0, 0.0), "RSRQ": (0.8, 0.05), "SINR": (4.0, 0.0)}
    ),
}


def write_inputs(root: Path, models: tuple[str, ...]) -> None:
    for i, name in enumerate(models):
        write_json(root / "eval" / f"{name}.json", EVALUATIONS[name])
        write_json(root / "profile" / f"{name}.json", profile(1000 * (i + 1)))


def run(root: Path, models: tuple[str, ...], baselines: bool = False) -> dict:
    baselines_path = root / "baselines.json"
    if baselines:
        write_json(
            baselines_path,
            {
                "majority": {
                    "classification": {
                        "f1": 0.0,
                        "auroc": 0.5,
                        "balanced_accuracy": 0.5,
                    },
                    "regression": {k: {"rmse": 3.0, "skill": 0.0} for k in KPIS},
                }
            },
        )
    return compare(
        models=models,
        targets=KPIS,
        eval_dir=root / "eval",
        profile_dir=root / "profile",
        baselines_path=baselines_path,
        metrics_path=root / "compare.json",
        plot_dir=root / "plots",
    )


def numbers_only(tree: Any) -> bool:
    if isinstance(tree, dict):
        return all(numbers_only(v) for v in tree.values())
    return isinstance(tree, int | float) and not isinstance(tree, bool)


def table_rows(path: Path) -> dict[str, dict[str, str]]:
    """The markdown table as ``{model: {column: cell}}``."""
    header, _, *lines = path.read_text().splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


MODELS = ("stl", "hardsharing", "mmoe")


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """stl, hardsharing and mmoe compared once, with a majority baseline."""
    root = tmp_path_factory.mktemp("compared")
    write_inputs(root, MODELS)
    return root, run(root, MODELS, baselines=True)


def test_delta_m_is_the_mean_signed_change_against_stl(compared):
    _, summary = compared

    # hardsharing: F1 +20, RSRP +25, RSRQ 0, SINR -25 (all in %).
    assert summary["hardsharing"]["delta_m"] == pytest.approx((20 + 25 + 0 - 25) / 4)
    # mmoe: F1 -10, RSRP 0, RSRQ +20, SINR 0.
    assert summary["mmoe"]["delta_m"] == pytest.approx((-10 + 0 + 20 + 0) / 4)
    assert "delta_m" not in summary["stl"]


def test_the_comparison_json_holds_numbers_side_by_side(compared):
    root, summary = compared

    written = json.loads((root / "compare.json").read_text())
    assert written == summary
    assert numbers_only(written)
    assert list(written) == sorted([*MODELS, "baselines"])
    stl = written["stl"]
    assert stl["classification"]["f1"] == 0.5
    assert stl["std"]["classification"]["f1"] == 0.02
    assert stl["regression"]["SINR"] == {"rmse": 4.0, "mae": 0.7, "skill": 0.7}
    assert written["mmoe"]["profile"]["params"] == 3000
    assert stl["profile"]["latency_ms_p99"] == 1.2
    assert stl["std"]["profile"]["train_time_s"] == 2.0
    assert stl["std"]["profile"]["params"] == 0.0
    assert written["baselines"]["majority"]["classification"]["auroc"] == 0.5


def test_the_table_marks_only_differences_beyond_both_spreads(compared):
    root, _ = compared

    rows = table_rows(root / "plots" / "table.md")

    assert list(rows) == [*MODELS, "*majority*"]
    hardsharing, mmoe, stl = rows["hardsharing"], rows["mmoe"], rows["stl"]
    assert hardsharing["F1"] == "0.600 ± 0.030 ▲"
    assert hardsharing["RMSE RSRP"] == "1.500 ± 0.300"
    assert hardsharing["RMSE RSRQ"] == "1.000 ± 0.100"
    assert hardsharing["RMSE SINR"] == "5.000 ± 0.100 ▼"
    assert hardsharing["Δm (%)"] == "+5.0"
    assert mmoe["F1"] == "0.450 ± 0.100"
    assert mmoe["RMSE RSRQ"] == "0.800 ± 0.050 ▲"
    assert mmoe["Δm (%)"] == "+2.5"
    assert stl["Δm (%)"] == "—"
    marked = [
        (name, column)
        for name, row in rows.items()
        for column, cell in row.items()
        if cell.endswith(("▲", "▼"))
    ]
    assert sorted(marked) == [
        ("hardsharing", "F1"),
        ("hardsharing", "RMSE SINR"),
        ("mmoe", "RMSE RSRQ"),
    ]


def test_baselines_get_a_row_of_their_own(compared):
    root, _ = compared

    row = table_rows(root / "plots" / "table.md")["*majority*"]

    assert row["F1"] == "0.000"
    assert row["RMSE RSRP"] == "3.000"
    assert row["params"] == "—"
    assert row["Δm (%)"] == "—"


def test_the_comparison_draws_its_figures_and_a_scores_table(compared):
    root, _ = compared

    for name in FIGURES:
        assert (root / "plots" / name).read_bytes()[:8] == PNG_MAGIC, name
    scores = pd.read_csv(root / "plots" / "scores.csv")
    assert scores["model"].tolist() == list(MODELS)
    assert scores["f1"].tolist() == [0.5, 0.6, 0.45]
    assert scores["rmse_SINR"].tolist() == [4.0, 5.0, 4.0]


def test_without_stl_there_is_no_delta_m_and_no_mark(tmp_path):
    write_inputs(tmp_path, ("hardsharing", "mmoe"))

    summary = run(tmp_path, ("hardsharing", "mmoe"))

    assert all("delta_m" not in block for block in summary.values())
    table = (tmp_path / "plots" / "table.md").read_text()
    assert "▲" not in table
    assert "▼" not in table


def test_a_missing_evaluation_names_the_file(tmp_path):
    write_inputs(tmp_path, ("stl",))

    with pytest.raises(MtlnetError, match=r"mmoe\.json: not found; run `dvc repro`"):
        run(tmp_path, ("stl", "mmoe"))


def test_a_broken_evaluation_names_the_file(tmp_path):
    write_inputs(tmp_path, MODELS)
    (tmp_path / "eval" / "mmoe.json").write_text('{"classification": ')

    with pytest.raises(MtlnetError, match=r"mmoe\.json: not valid JSON"):
        run(tmp_path, MODELS)
