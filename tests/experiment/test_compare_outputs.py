"""The scaling benchmark (raw env only) and the results page generator."""

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_raw_env_and_results_page(tmp_path):
    scaling = _load("benchmarks/scaling.py")
    bench = tmp_path / "bench"
    rows = scaling.main(
        ["--quick", "--batches", "2,8", "--algos=", "--out", str(bench)]
    )
    assert [(r["algo"], r["B"]) for r in rows] == [("env", 2), ("env", 8)]
    for row in rows:
        assert math.isfinite(row["env_steps_per_s"]) and row["env_steps_per_s"] > 0
    lines = (bench / "scaling.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == rows
    assert (bench / "scaling.png").stat().st_size > 1000

    # a fake finished comparison and run, as written by the harness and the runner
    table = {
        "name": "cmp",
        "config": {"total_env_steps": 1000, "num_seeds": 2},
        "rows": [
            {
                "env": "CartPole-v1",
                "algo": "ppo",
                "final_return_median": 123.4,
                "final_return_iqr": 5.0,
                "threshold": 475.0,
                "steps_to_threshold": None,
                "run_s": 1.5,
                "compile_s": 2.5,
                "env_steps_per_s": 12345.0,
            }
        ],
    }
    (tmp_path / "results" / "cmp").mkdir(parents=True)
    (tmp_path / "results" / "cmp" / "table.json").write_text(json.dumps(table))
    summary = {
        "name": "r",
        "algo": "ppo",
        "env": "CartPole-v1",
        "num_seeds": 2,
        "num_envs": 4,
        "env_steps": 1000,
        "final_mean_return": 50.0,
        "final_mean_return_per_seed": [40.0, None],
        "env_steps_per_s": 1e5,
        "compile_s": 1.0,
        "wall_s": 0.01,
    }
    (tmp_path / "runs" / "r").mkdir(parents=True)
    (tmp_path / "runs" / "r" / "summary.json").write_text(json.dumps(summary))

    make_results = _load("scripts/make_results.py")
    out = tmp_path / "docs" / "results.md"
    make_results.main(
        [
            "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "results"),
            "--benchmarks", str(bench),
            "--out", str(out),
        ]
    )  # fmt: skip
    text = out.read_text()
    assert "| r | ppo | CartPole-v1 | 2 | 4 |" in text
    assert "| CartPole-v1 | ppo | 123.4 | 5 | not reached (475) |" in text
    assert "](../results/cmp/curves.png)" in text
    assert "| raw env, random actions |" in text and "B=8" in text
