"""Plots that answer questions: thresholds, chunk markers, labelled seeds, errors."""

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest

from marketjax.experiment import compare_plots, plots, prices_run


@pytest.fixture
def figures(monkeypatch):
    """Every figure the code closes (i.e. finished drawing), kept for inspection."""
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        plt.figure(fig.number)
        plt.clf()
    plt.close("all")


def _dashed(ax):
    return [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]


def test_compare_curves_have_threshold_markers_and_labelled_seeds(tmp_path, figures):
    per_seed = [[0.0, 1.0], [2.0, 3.0], [4.0, np.nan]]  # [chunks][seeds]
    curves = {
        ("E", "a"): {
            "env_steps": [10, 20, 30],
            "wall_s": [1, 2, 3],
            "per_seed": per_seed,
        }
    }
    compare_plots.plot_curves(
        curves, ["E"], ["a"], tmp_path / "c.png", "t", thresholds={"E": 0.9}
    )
    [fig] = figures
    steps_ax, wall_ax = fig.axes[:2]
    for ax in (steps_ax, wall_ax):
        [line] = _dashed(ax)
        assert list(line.get_ydata()) == [0.9, 0.9]
    [median] = [ln for ln in steps_ax.get_lines() if ln.get_label() == "a"]
    assert median.get_marker() == "o"
    np.testing.assert_allclose(median.get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(median.get_ydata(), [0.5, 2.5, 4.0])
    labels = {t.get_text(): t.xy for t in steps_ax.texts}
    assert labels == {"s0": (30.0, 4.0), "s1": (20.0, 3.0)}  # its last finite point
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_no_threshold_no_dashed_line(tmp_path, figures):
    curves = {("E", "a"): {"env_steps": [1], "wall_s": [1], "per_seed": [[1.0]]}}
    compare_plots.plot_curves(curves, ["E", "F"], ["a"], tmp_path / "c.png", "t")
    assert not any(_dashed(ax) for ax in figures[0].axes)


def test_run_returns_plot_draws_the_threshold(tmp_path, figures):
    rows = [
        {
            "env_steps": 8 * (i + 1),
            "mean_return": 1.0 * i,
            "mean_return_per_seed": [1.0 * i, None],
        }
        for i in range(3)
    ]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plots.plot_returns(metrics, tmp_path / "r.png", "t", threshold=475.0)
    plots.plot_returns(metrics, tmp_path / "s.png", "t")
    with_line, without = figures
    [line] = _dashed(with_line.axes[0])
    assert list(line.get_ydata()) == [475.0, 475.0]
    assert not _dashed(without.axes[0])
    legend = [t.get_text() for t in with_line.axes[0].get_legend().get_texts()]
    assert legend == ["seed 0", "seed 1", "median over seeds", "threshold 475"]


def test_elementwise_relative_error_known_answer():
    got = prices_run.elementwise_rel_error([1.1, 2.0, 0.0, -3.0], [1.0, 2.0, 0.0, -1.5])
    np.testing.assert_allclose(got, [0.1, 0.0, 0.0, 1.0], rtol=1e-12)


def test_prices_plot_shows_relative_error_per_layer_on_log_axes(tmp_path, figures):
    g0 = np.array([[1.0, -2.0]])
    p0 = np.array([[1.0 + 1e-6, -2.0]])
    g1 = np.array([[0.5]])
    report = SimpleNamespace(
        prices=(p0, g1), gradients=(g0, g1), rel_error=np.array([4.5e-7, 0.0])
    )
    prices_run.plot(report, tmp_path / "p.png", tol=1e-6)
    [fig] = figures
    left, right = fig.axes
    assert left.get_yscale() == "log"
    assert right.get_xscale() == right.get_yscale() == "log"
    heights = [bar.get_height() for bar in left.patches]
    np.testing.assert_allclose(heights, [4.5e-7, 1e-17])  # exact 0 at the floor
    assert [t.get_text() for t in left.texts] == ["4.5e-07", "0 (exact)"]
    [tol] = _dashed(left)
    assert list(tol.get_ydata()) == [1e-6, 1e-6]
    points = right.collections[0].get_offsets()  # layer 0: (|g|, |p-g|/|g|)
    np.testing.assert_allclose(points[:, 0], [1.0, 2.0])
    np.testing.assert_allclose(points[:, 1], [1e-6, 1e-17], rtol=1e-6)
