"""What ``runner.loggers: [jsonl, tensorboard]`` costs on the quickstart config.

Trains ``configs/quickstart.yaml`` twice in this process (jsonl only, then with
tensorboard; into a temporary folder) and reports each run's chunk wall time
(``summary.json`` ``wall_s``: the chunk calls) and the whole ``train_and_write``
call; the TensorBoard writer itself (open, one ``log`` per chunk row, close) is
timed on the run's own metrics rows, since it runs between chunks, outside
``wall_s``. Target (issue 16): < 2% of the run's wall time. Prints one JSON object
and writes ``<out>/tensorboard_cost.json`` and ``.png``.

    .venv/bin/python benchmarks/tensorboard_cost.py [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from marketjax.experiment.config import load_yaml
from marketjax.experiment.loggers import Loggers
from marketjax.experiment.registry import parse_train_config
from marketjax.experiment.train_io import train_and_write


def train(out: Path, loggers: list[str]) -> tuple[dict, float]:
    data = load_yaml("configs/quickstart.yaml")
    data["runner"] = {**data.get("runner", {}), "out_dir": str(out)}
    data["runner"].update(progress=False, loggers=loggers)
    config = parse_train_config(data)
    start = time.perf_counter()
    summary = train_and_write(config, overwrite=True)
    return summary, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/out")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    _, plain_s = train(tmp / "plain", ["jsonl"])
    logged, logged_s = train(tmp / "tb", ["jsonl", "tensorboard"])
    run = tmp / "tb" / "quickstart"
    config = parse_train_config(load_yaml(run / "config.yaml"))
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    start = time.perf_counter()
    writer = Loggers(config, [tmp / "writer"])
    for row in rows:
        writer.log(0, row)
    writer.close()
    writer_s = time.perf_counter() - start
    result = {
        "benchmark": "tensorboard_cost",
        "chunks": len(rows),
        "writer_s": round(writer_s, 4),
        "chunk_wall_s": round(logged["wall_s"], 3),
        "writer_share_of_chunk_wall": round(writer_s / logged["wall_s"], 4),
        "train_call_s_jsonl": round(plain_s, 2),
        "train_call_s_tensorboard": round(logged_s, 2),
        "writer_share_of_train_call": round(writer_s / logged_s, 4),
        "target": "< 0.02 of the run's wall time",
    }
    print(json.dumps(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tensorboard_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(["chunks (wall_s)", "TensorBoard writer"], [logged["wall_s"], writer_s])
    ax.set_xlabel("seconds (quickstart, 10 chunks)")
    ax.set_title(
        f"TensorBoard costs {100 * writer_s / logged['wall_s']:.2f}% of chunks"
    )
    fig.tight_layout()
    fig.savefig(out / "tensorboard_cost.png", dpi=100)


if __name__ == "__main__":
    main()
