"""wealth.png: written for market runs, skipped for runs without a market."""

import json

from marketjax.experiment.plots import plot_wealth


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_wealth_plot_is_written_for_market_rows_and_skipped_otherwise(tmp_path):
    market = [
        {
            "env_steps": 100 * (i + 1),
            "wealth_min": 1.0 - i,
            "wealth_max": 10.0 * (i + 1),
            "wealth_mean": 5.0,
            "money_in_circulation": 40.0,
            "wealth_gini": 0.1 * i,
            "wealth_top_share": 0.3,
            "win_top_share": 0.5,
            "capped_fraction": 0.2,
            "entries": float(i),
            "exits": float(i),
            "bank": -3.0,
        }
        for i in range(4)
    ]
    _write(tmp_path / "m.jsonl", market)
    assert plot_wealth(tmp_path / "m.jsonl", tmp_path / "wealth.png", "t")
    assert (tmp_path / "wealth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _write(tmp_path / "ppo.jsonl", [{"env_steps": 1, "mean_return": 2.0}])
    assert not plot_wealth(tmp_path / "ppo.jsonl", tmp_path / "none.png", "t")
    assert not (tmp_path / "none.png").exists()
