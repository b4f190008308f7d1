"""Config errors name the key before anything compiles; overrides; round trip."""

from pathlib import Path

import pytest
import yaml

from marketjax.experiment.compare import parse_compare_config, resolve_cases
from marketjax.experiment.config import ConfigError, apply_overrides, load_yaml
from marketjax.experiment.prices_run import load_config as load_prices_config
from marketjax.experiment.registry import parse_train_config, train_config_to_dict

BASE = {
    "name": "t",
    "algo": "deep",
    "env": "CartPole-v1",
    "total_env_steps": 1000,
    "deep": {"num_agents": 4},
}


def _with(**changes):
    data = {**BASE, **changes}
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(num_env=4), "unknown key 'num_env' (did you mean 'num_envs'?)"),
        (_with(deep={"lerning": "bids"}), "unknown key 'deep.lerning' (did you mean"),
        (_with(deep={"gamma": 1.5}), "'deep.gamma' must be <= 1.0, got 1.5"),
        (_with(deep={"num_agents": 0}), "'deep.num_agents' must be >= 1, got 0"),
        (_with(deep={"auction": "dutch"}), "'deep.auction' must be one of"),
        (_with(num_envs="many"), "'num_envs' must be an integer, got 'many'"),
        (_with(deep={"layer_norm": "yes"}), "'deep.layer_norm' must be true or false"),
        (_with(deep={"norm": "batch"}), "'deep.norm' must be one of 'layer', 'rms'"),
        (_with(total_env_steps=None), "missing required key 'total_env_steps'"),
        (
            _with(env="CartPol-v1"),
            "unknown env 'CartPol-v1' (did you mean 'CartPole-v1'",
        ),
        (_with(algo="dep"), "unknown algorithm 'algo.dep' (did you mean 'deep'?)"),
        (_with(env="Pendulum-v1"), "'env': the deep market needs discrete actions"),
        (_with(ppo={"lr": 1e-3}), "section 'ppo' given but algo is 'deep'"),
        (_with(runner={"num_chunks": 0}), "'runner.num_chunks' must be >= 1"),
        (_with(deep={"hidden": [64, 0]}), "'deep.hidden[1]' must be >= 1"),
        (
            _with(deep={"family": "trunk", "hidden": []}),
            "'deep.hidden': the trunk family needs at least one hidden layer",
        ),
        (_with(deep={"lr": float("nan")}), "'deep.lr' must be a finite number"),
        (_with(deep={"gamma": "inf"}), "'deep.gamma' must be a finite number"),
        (_with(name="../elsewhere"), "'name' must be a plain directory name"),
        (_with(name=""), "'name' must be a plain directory name"),
        (
            _with(deep={"num_agents": 4, "family": "conv"}),
            "'deep.family': conv reads image observations (H, W, C); "
            "CartPole-v1's observations have shape (4,)",
        ),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as info:
        parse_train_config(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_parse_yaml_scalars_and_nested_keys():
    data = apply_overrides(
        BASE, ["deep.lr=3e-4", "runner.debug=true", "num_envs=8", "deep.hidden=[4,4]"]
    )
    config = parse_train_config(data)
    assert config.algo_config.lr == pytest.approx(3e-4)
    assert config.runner.debug is True and config.num_envs == 8
    assert config.algo_config.hidden == (4, 4)
    assert BASE["deep"] == {"num_agents": 4}  # the input is not mutated
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides(BASE, ["deep.lr"])
    with pytest.raises(ConfigError, match=r"'deep.hidden=\[4,': value is not valid"):
        apply_overrides(BASE, ["deep.hidden=[4,"])
    # An empty section in the YAML file (`deep:`) loads as None: still a section.
    data = apply_overrides({**BASE, "deep": None}, ["deep.num_agents=2"])
    assert parse_train_config(data).algo_config.num_agents == 2


def test_resolved_config_round_trips_and_is_hashable(tmp_path):
    config = parse_train_config(BASE)
    hash(config)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(train_config_to_dict(config)))
    assert parse_train_config(load_yaml(path)) == config


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml(path)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "missing.yaml")
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_yaml(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "path", ["configs/quickstart.yaml", "configs/deep_cartpole.yaml"]
)
def test_shipped_configs_are_valid(path):
    config = parse_train_config(load_yaml(path))
    assert config.name and config.total_env_steps > 0


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (REPO / "configs").glob("*.yaml")), ids=str
)
def test_every_shipped_config_validates(path):
    """Every file in configs/ passes its command's validation (a training config,
    a comparison, whose every (env, algorithm) case is validated, or a prices
    config), so a shipped config never fails on a user's first run."""
    path = REPO / "configs" / path
    data = load_yaml(path)
    if "algorithms" in data:
        cases = resolve_cases(parse_compare_config(data), base=REPO)
        assert len(cases) == len(data["envs"]) * len(data["algorithms"])
    elif "algo" in data:
        assert parse_train_config(data).name == data["name"]
    else:
        assert load_prices_config(str(path), []).name == data["name"]
