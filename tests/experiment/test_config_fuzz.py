"""Issue 14: malformed configs are one-line errors naming the key, before compiling.

The table is generated from the schema: for every key of every section, a value of
the wrong type and values just outside its range (for a choice, values that are
none of its choices); plus unknown keys, non-string keys, duplicate keys, bad
names. Parsing runs in-process; a few cases run the CLI to check the exit status,
the single stderr line and that no directory is left.
"""

import argparse
import dataclasses
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from marketjax import cli
from marketjax.core.config import ConfigError, describe, load_yaml, safe_load
from marketjax.core.schema import TrainConfig
from marketjax.experiment.checkpoint import write_atomic
from marketjax.experiment.compare import parse_compare_config
from marketjax.experiment.registry import get_algorithm, parse_train_config

MARKETJAX = str(Path(sys.executable).parent / "marketjax")
ENVS = {"deep": "Catch-bsuite", "wide": "MultiCatch-2", "ppo": "CartPole-v1"}


def _base(algo):
    return {
        "name": "fuzz",
        "algo": algo,
        "env": ENVS[algo],
        "total_env_steps": 64,
        "num_envs": 4,
        "runner": {"out_dir": "never"},
        algo: {"num_agents": 4} if algo != "ppo" else {},
    }


def _bad_values(hint, f):
    """Values of the wrong type and just outside the range of one key."""
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    bad = [{"a": 1}]  # a mapping is wrong for every scalar key
    if hint in (int, float):
        bad += ["abc", True]
        if lo is not None:
            bad.append(lo if f.metadata.get("lo_open") else lo - max(1, abs(lo)))
        if hi is not None:
            bad.append(hi * 10 + 1)
    if hint is float:
        bad += [".nan", "inf"]
    if hint is int:
        bad += [1.5, "2.5e0"]
    if hint is bool:
        bad += ["yes please", 2]
    if typing.get_origin(hint) is typing.Literal:  # a choice: none of the choices
        choices = typing.get_args(hint)
        bad += ["not-a-choice", 1, True, [choices[0]], choices[0].upper()]
    return bad


def _cases():
    cases = []
    for algo in ENVS:
        section = get_algorithm(algo).config_class
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            for value in _bad_values(hints[f.name], f):
                cases.append((algo, (algo, f.name), value, f"'{algo}.{f.name}"))
    from marketjax.core.schema import RunnerConfig, TrainConfig

    for cls, path in ((TrainConfig, ()), (RunnerConfig, ("runner",))):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            literal = typing.get_origin(hints[f.name]) is typing.Literal
            if hints[f.name] not in (int, float, bool) and not literal:
                continue
            dotted = ".".join((*path, f.name))
            for value in _bad_values(hints[f.name], f):
                cases.append(("deep", (*path, f.name), value, f"'{dotted}"))
    return cases


CASES = _cases()


@pytest.mark.parametrize("algo, path, value, key", CASES)
def test_every_malformed_value_is_one_line_naming_the_key(algo, path, value, key):
    data = _base(algo)
    node = data
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = safe_load(value) if isinstance(value, str) else value
    with pytest.raises(ConfigError) as info:
        parse_train_config(data)
    message = str(info.value)
    assert "\n" not in message and key in message, (path, value, message)


def test_the_table_covers_every_numeric_key():
    assert len(CASES) > 300
    assert {c[3] for c in CASES} >= {"'deep.lr", "'ppo.num_steps", "'runner.num_chunks"}
    assert {"'env_reset", "'wide.valuation"} <= {c[3] for c in CASES}  # choices


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update({1: 2}), "unknown key '1'"),
        (lambda d: d.update({None: 3}), "unknown key 'None'"),
        (lambda d: d["deep"].update({2.5: 1}), "unknown key 'deep.2.5'"),
        (lambda d: d["runner"].update({True: 1}), "unknown key 'runner.True'"),
        (lambda d: d.update(name="x" * 101), "'name' must be at most 100 characters"),
        (lambda d: d.update(name="a\0b"), "'name' must not contain control"),
        (lambda d: d.update(name="a\tb"), "'name' must not contain control"),
        (lambda d: d["runner"].update(out_dir="r\0s"), "'runner.out_dir' must not"),
        (lambda d: d["deep"].update(num_agents=2), "'deep.num_agents' (2) is fewer"),
        (lambda d: d.update(total_env_steps="1.5e3x"), "'total_env_steps' must be"),
    ],
)
def test_bad_keys_and_names_are_config_errors(mutate, message):
    data = _base("deep")
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_train_config(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_non_string_keys_in_a_compare_config_do_not_crash():
    data = {"name": "c", "envs": [{"id": "Catch-bsuite", 3: 1}], "algorithms": []}
    with pytest.raises(ConfigError, match=r"unknown key 'envs\[0\]\.3'"):
        parse_compare_config(data)


def test_num_agents_auto_is_one_agent_per_action():
    data = _base("deep")
    data["deep"] = {"num_agents": "auto"}
    assert parse_train_config(data).algo_config.num_agents == 3  # Catch: 3 actions
    data |= {"env": "Acrobot-v1"}
    assert parse_train_config(data).algo_config.num_agents == 3
    data |= {"env": "CartPole-v1"}
    assert parse_train_config(data).algo_config.num_agents == 2


def test_yaml_1_1_numbers_written_without_a_dot_are_accepted():
    data = _base("deep") | {"total_env_steps": "1e6", "num_envs": "16"}
    config = parse_train_config(data)
    assert config.total_env_steps == 1_000_000 and config.num_envs == 16
    assert yaml.safe_load("total_env_steps: 1e6")["total_env_steps"] == "1e6"


def test_duplicate_keys_are_rejected_in_files_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ndeep:\n  lr: 0.1\n  gamma: 0.9\n  lr: 0.2\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert "duplicate key 'lr' (first on line 3)" in str(info.value)
    assert "line 5" in str(info.value)
    assert safe_load("a: [1, {b: 2}]") == {"a": [1, {"b": 2}]}  # otherwise safe_load
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        safe_load("!!python/object:os.system x")


@pytest.mark.parametrize(
    "override, message",
    [
        ("num_envs=1e9", "'num_envs' must be <= 1048576"),
        ("deep.initial_wealth=1e39", "'deep.initial_wealth' must be <= 1e+30"),
        ("name=../x", "'name' must be a plain directory name"),
    ],
)
def test_cli_malformed_config_exits_2_with_one_line_and_no_directory(
    tmp_path, override, message
):
    path = tmp_path / "c.yaml"
    data = _base("deep")
    data["runner"]["out_dir"] = str(tmp_path / "runs")
    path.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [MARKETJAX, "train", str(path), override],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "runs").exists()


# --- 9. newcomer friction -------------------------------------------------------


def test_overrides_may_follow_options():
    args = cli.parse_args(["train", "c.yaml", "--resume", "deep.lr=0.1", "seed=2"])
    assert args.resume and args.overrides == ["deep.lr=0.1", "seed=2"]
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "c.yaml", "--bogus"])


def test_version_and_help_text(capsys):
    from marketjax import __version__

    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == f"marketjax {__version__}"
    text = cli.build_parser().format_help()
    assert "``" not in text and "~/.cache/marketjax" in text


def test_config_command_lists_every_key_of_a_section(capsys):
    assert cli.main(["config", "deep"]) == 0
    out = capsys.readouterr().out.splitlines()
    section = get_algorithm("deep").config_class
    keys = [line.split()[0] for line in out[1:]]
    assert keys == [f.name for f in dataclasses.fields(section)]
    row = next(line for line in out if line.split()[0] == "num_agents")
    assert row.split()[1:6] == ["int", "|", "auto", "8", "[1,"]
    assert "N agent slots" in row
    assert ("lr", "float", "0.001", "(0, 10]", "Adam learning rate") in describe(
        section
    )
    assert cli.main(["config", "depp"]) == 2
    assert "did you mean 'deep'" in capsys.readouterr().err


def test_bench_finds_benchmarks_from_any_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (cli.benchmarks_dir() / "throughput.py").is_file()
    assert cli.main(["bench", "no_such_benchmark"]) == 2
    assert "throughput" in capsys.readouterr().err


def test_output_files_are_readable_by_all(tmp_path):
    write_atomic(tmp_path / "f.txt", "x")
    umask = __import__("os").umask(0)
    __import__("os").umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_demo_overwrites_and_readme_mentions_the_cache():
    root = cli.benchmarks_dir().parent
    demo = (root / "Makefile").read_text().split("demo:")[1].splitlines()[1]
    assert "--overwrite" in demo
    assert "~/.cache/marketjax" in (root / "README.md").read_text()


def test_no_int_range_overflows_float32():
    for algo in ENVS:
        for row in describe(get_algorithm(algo).config_class):
            if row[3]:
                hi = float(row[3].split(",")[1].rstrip("])"))
                assert math.isfinite(hi) and hi <= 1e30, row


def test_every_key_of_every_section_and_every_argument_is_documented():
    undocumented = [
        f"{name}.{row[0]}"
        for name, (cls, skip) in cli.config_sections().items()
        for row in describe(cls, skip)
        if not row[4].strip()
    ]
    assert undocumented == []
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    bare = [
        f"{name} {action.dest}"
        for name, p in sub.choices.items()
        for action in p._actions
        if action.dest != "help" and not action.help
    ]
    assert bare == []
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "``" not in text and ":func:" not in text, name


def test_ranges_print_exact_integers_and_list_entries_get_their_keys():
    rows = {row[0]: row for row in describe(TrainConfig)}
    assert rows["seed"][3] == "[0, 2147483647]"
    assert rows["num_envs"][3] == "[1, 1048576]"
    assert rows["total_env_steps"][3] == "[1, 1e+12]"
    from marketjax.experiment.compare import CompareConfig

    keys = [row[0] for row in describe(CompareConfig)]
    assert keys[1:4] == ["envs", "envs[].id", "envs[].threshold"]
    assert "algorithms[].overrides" in keys
