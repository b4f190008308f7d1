"""Training a deep market (``algo: deep``): CAPITALISM, bid learning, or both.

One update = ``rollout_steps`` market steps (``markets/deep.py``) in each of
``num_envs`` episodes, then the learners that ``learning:`` names
(``learners/__init__.py``):

- ``selection`` — the paper's training loop alone: wealth is the only parameter;
  bankrupt agents leave and entrants (mutated clones of the richest, or fresh
  draws) receive an allowance (``learners/selection.py``).
- ``bids`` — every agent's bid function regresses on its own payoff stream, Q(λ)
  (``learners/q_lambda.py``): under Vickrey, the optimal bid is Q(s, a_agent).
- ``both`` — the two chained.

Exploration is an ε-lottery: with probability ε an episode's right goes to a
uniformly drawn valid agent, who pays no more than its own bid (ε anneals linearly).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from marketjax.agents.families import CONSTANT_ACTION, FAMILIES, make_family
from marketjax.agents.population import init_population
from marketjax.agents.rules import rule_value
from marketjax.algos.market_config import MarketConfig, explore_rate, market_learner
from marketjax.algos.market_trainer import make_market_trainer
from marketjax.core.config import ConfigError, field
from marketjax.core.schema import TrainConfig, Trainer, sweepable_params, total_updates
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.learners import (
    linear_anneal,
)
from marketjax.markets.deep import (
    BID_TARGETS,
    DeepMarket,
    DeepMarketParams,
    StepRecord,
)
from marketjax.markets.diagnostics import ownership_diagnostics
from marketjax.markets.ledger import BUDGET_RULES, RENT_BASES
from marketjax.mechanisms.payments import RULES


@dataclasses.dataclass(frozen=True)
class DeepConfig(MarketConfig):
    """The ``deep:`` section of a training config."""

    num_agents: int | Literal["auto"] = field(
        8, lo=1, hi=100_000, doc="N agent slots (auto: one per action of the env)"
    )
    family: Literal[FAMILIES] = field(
        "mlp", doc="agent family: " + " | ".join(FAMILIES)
    )
    auction: Literal[RULES] = field("vickrey", doc="payment rule of the auctions")
    rent_on: Literal[RENT_BASES] = field(
        "owners", doc="owners: rent on rights held; all: on every living agent"
    )
    budget_rule: Literal[BUDGET_RULES] = field(
        "share",
        doc="share: each bid <= budget/B; scale: an agent's bids scaled to fit it",
    )
    bid_target: Literal[BID_TARGETS] = field(
        "price",
        doc="price: bids regress on budgeted prices; value: on unbudgeted bids; "
        "net: on prices, less the owner's price on time (owner_rent)",
    )
    reserve: float = field(
        0.0,
        lo=0.0,
        hi=1e9,
        static=True,
        doc="the bank's reserve price when it sells a fresh episode (0: none)",
    )
    bid_init: float = field(
        1.0,
        lo=-1e9,
        hi=1e9,
        static=True,
        doc="initial constant c of linear bids (linear, linear_policy families)",
    )
    bid_spread: float = field(
        0.0,
        lo=0.0,
        hi=1e9,
        static=True,
        doc="std of the initial constant c across agents (linear bids)",
    )

    def resolve(self, config: TrainConfig) -> DeepConfig:
        """``num_agents: auto`` becomes one agent per action of the env (the
        resolved number is what the run directory's config.yaml records)."""
        if self.num_agents != "auto":
            return self
        from marketjax.envs.gymnax_adapter import env_spec

        return dataclasses.replace(self, num_agents=env_spec(config.env).num_actions)

    def validate(self, config: TrainConfig) -> None:
        self.check_common(config, "deep")
        from marketjax.envs.gymnax_adapter import env_spec

        actions = env_spec(config.env).num_actions
        shape = obs_shape(config.env)
        if self.family == "conv" and len(shape) != 3:
            raise ConfigError(
                f"'deep.family': conv reads image observations (H, W, C); "
                f"{config.env}'s observations have shape {shape}"
            )
        if self.family == "trunk" and not self.hidden:
            raise ConfigError(
                "'deep.hidden': the trunk family needs at least one hidden layer "
                "(its agents' heads read the last one)"
            )
        constant = self.family in CONSTANT_ACTION
        if constant and self.num_agents < actions:
            raise ConfigError(
                f"'deep.num_agents' ({self.num_agents}) is fewer than the "
                f"{actions} actions of {config.env}: {self.family} agents each "
                f"play one fixed action, so some actions would never be taken; "
                f"set deep.num_agents >= {actions} or deep.family: policy"
            )


CONFIG_CLASS = DeepConfig


def obs_shape(env_name: str) -> tuple[int, ...]:
    """The env's unflattened observation shape (the conv family reads (H, W, C))."""
    from marketjax.envs.gymnax_adapter import make_gymnax

    env, params = make_gymnax(env_name)
    return tuple(int(d) for d in env.observation_space(params).shape)


def step_metrics(num_agents: int):
    """The deep market's per-update metrics from its records [T, B]."""

    def metrics(state, rec: StepRecord) -> dict:
        return {
            "mean_price": jnp.mean(rec.paid),
            "mean_top_bid": jnp.mean(rec.top_bid),
            "bank_acted_frac": jnp.mean((rec.winner < 0).astype(jnp.float32)),
            **ownership_diagnostics(
                rec.winner, rec.capped, state.population.age, num_agents
            ),
        }

    return metrics


def build_market(config: TrainConfig, num_envs: int) -> DeepMarket:
    """The ``deep:`` section's market (env of ``num_envs`` episodes, agent family,
    payment and rent rules, reserve): one builder for training and replay."""
    dc: DeepConfig = config.algo_config
    env = BatchedEnv(config.env, num_envs, reset=config.env_reset)
    family = make_family(
        dc.family,
        env.spec.obs_dim,
        env.spec.num_actions,
        dc.hidden,
        dc.layer_norm,
        obs_shape=obs_shape(config.env),
        bid_init=dc.bid_init,
        bid_spread=dc.bid_spread,
        norm=dc.norm,
        **dc.family_options(),
    )
    return DeepMarket(
        env,
        family,
        dc.auction,
        dc.rent_rule,
        dc.rent_on,
        reserve=dc.reserve,
        budget_rule=dc.budget_rule,
        bid_target=dc.bid_target,
    )


def make_trainer(config: TrainConfig) -> Trainer:
    """Builds the deep market's trainer for one seed (see module docstring)."""
    dc: DeepConfig = config.algo_config
    market = build_market(config, config.num_envs)
    family = market.family
    steps_per_update = dc.rollout_steps * config.num_envs
    num_updates = total_updates(config, steps_per_update)
    if family.values is not None:  # qnet: Q(λ) on the output of the action taken

        def value_fn(p, obs):
            return family.values({"bid": p}, obs)
    elif family.name == "rules":  # a rule owns only where its condition holds

        def value_fn(p, obs):
            return rule_value(p, obs)[None]
    else:  # the bid itself (for the trunk family, of the trunk's feature)

        def value_fn(p, obs):
            return family.bid({"bid": p}, obs)[None]

    learner = market_learner(
        dc,
        family,
        value_fn,
        lambda params: params["bid"],
        lambda params, bid: {**params, "bid": bid},
        num_updates,
    )

    def market_params(params, update_index):
        explore = explore_rate(params, num_updates, update_index)
        return DeepMarketParams(
            params["gamma"], params["rent"], explore, params.get("owner_rent")
        )

    def make_population(key, params):
        return init_population(key, family, dc.num_agents, params["initial_wealth"])

    return make_market_trainer(
        market=market,
        learner=learner,
        init_population=make_population,
        market_params=market_params,
        step_metrics=step_metrics(dc.num_agents),
        rollout_steps=dc.rollout_steps,
        default_params=sweepable_params(dc),
    )


def explore_at(config: TrainConfig, update_index: int) -> float:
    """ε of the exploration lottery at an update (for tests and plots)."""
    dc: DeepConfig = config.algo_config
    n = total_updates(config, dc.rollout_steps * config.num_envs)
    value = linear_anneal(
        dc.explore_start, dc.explore_end, dc.explore_fraction, n, update_index
    )
    return float(jax.device_get(value))
