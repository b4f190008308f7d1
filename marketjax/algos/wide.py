"""Training a wide market (``algo: wide``): agents learn their valuations.

One update = ``rollout_steps`` steps of the wide market (``markets/wide.py``) in each
of ``num_envs`` episodes, then the learners that ``learning:`` names. With
``bids`` every agent's Q-network regresses, per good it controlled, on its realised
payoff stream: the factor's reward plus γ times the next clearing price (what the
next buyers pay per unit held), by Q(λ) (``learners/q_lambda.py``). An agent's bid
for a good is the greedy value ``max_a Q_i[g, a]``, so equilibrium prices approach
the best agents' values (seed Def. 2.2; the deep market's Vickrey argument, per
good). ``selection`` and ``both`` add CAPITALISM's entry and exit.

Exploration: the controller of each good acts ε-greedily (ε anneals linearly), and
the controller is drawn among the holders in proportion to their holdings.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from marketjax.agents.families import AgentFamily, perturb_floats
from marketjax.agents.population import Population
from marketjax.algos.market_config import MarketConfig, explore_rate, market_learner
from marketjax.algos.market_trainer import make_market_trainer
from marketjax.core.config import ConfigError, field
from marketjax.core.schema import TrainConfig, Trainer, sweepable_params, total_updates
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.markets.wide import (
    WideMarket,
    WideMarketParams,
    WideStepRecord,
    factors,
    make_q_networks,
)
from marketjax.markets.wide_clear import BUDGETS, VALUATIONS
from marketjax.mechanisms.quadratic_equ import coupling_bounds

MAX_JOINT_ACTIONS = 4096  # wide.joint_action: outputs of the joint head, A^G


@dataclasses.dataclass(frozen=True)
class WideConfig(MarketConfig):
    """The ``wide:`` section of a training config."""

    num_agents: int = field(4, lo=1, hi=100_000, doc="N agents")
    curvature: float = field(
        0.1, lo=0.0, lo_open=True, hi=1e6, doc="c in v(x) = q.x - (c/2)|x|^2"
    )
    control: Literal["proportional", "largest"] = field(
        "proportional",
        doc="who acts on a good: a holder drawn by holding, or the largest holder",
    )
    valuation: Literal[VALUATIONS] = field(
        "separable",
        doc="separable: v = q.x - (c/2)|x|^2, closed-form Equ; coupled: "
        "v = q.x - x'Cx/2, C = c((1-rho)I + rho 11'), batched Newton Equ",
    )
    coupling: float = field(
        -0.1,
        lo=-1.0,
        lo_open=True,
        hi=0.9,
        doc="rho of coupled valuations: < 0 complements, > 0 substitutes; "
        "C is positive definite for -1/(G-1) < rho < 1",
    )
    budget: Literal[BUDGETS] = field(
        "shared",
        doc="shared: what an agent can be made to pay in one episode <= an equal 1/B "
        "share of its wealth (the deep market's rule: B episodes never overdraw); "
        "per_episode: <= its whole wealth in each episode (the first wave's rule)",
    )
    equ_tol: float = field(
        1e-4, lo=0.0, lo_open=True, hi=1.0, doc="Equ's relative excess-demand tol"
    )
    equ_max_iters: int = field(50, lo=1, hi=100_000, doc="Equ's iteration cap")
    joint_action: bool = field(
        False,
        doc="agents also value every joint action of all G goods (A^G outputs) and "
        "act with it where they control every good of an episode",
    )

    def validate(self, config: TrainConfig) -> None:
        self.check_common(config, "wide")
        if self.joint_action:
            from marketjax.envs.gymnax_adapter import env_spec, make_gymnax

            env, _ = make_gymnax(config.env)
            goods = int(getattr(env, "num_factors", 1))
            default = env_spec(config.env).num_actions
            actions = int(getattr(env, "factor_actions", default))
            if actions**goods > MAX_JOINT_ACTIONS:
                raise ConfigError(
                    f"'wide.joint_action' needs {actions}^{goods} = {actions**goods} "
                    f"joint outputs on {config.env}; at most {MAX_JOINT_ACTIONS}"
                )
        if self.valuation == "coupled":
            from marketjax.envs.gymnax_adapter import make_gymnax

            env, _ = make_gymnax(config.env)
            goods = int(getattr(env, "num_factors", 1))
            lo, hi = coupling_bounds(goods)
            if not lo < self.coupling < hi:
                raise ConfigError(
                    f"'wide.coupling' must lie in ({lo:.4g}, {hi:g}) for the {goods} "
                    f"goods of {config.env} (C must be positive definite), "
                    f"got {self.coupling}"
                )

    def notes(self, config: TrainConfig) -> list[str]:
        """Choices the run makes on the user's behalf (printed before it starts)."""
        from marketjax.envs.gymnax_adapter import env_spec, make_gymnax

        env, _ = make_gymnax(config.env)
        if hasattr(env, "num_factors"):
            return []
        actions = env_spec(config.env).num_actions
        return [
            f"{config.env} has no factored action space: the wide market trades "
            f"one good (the env's {actions} actions), like a deep market"
        ]


CONFIG_CLASS = WideConfig


def step_metrics(num_agents: int):
    """The wide market's per-update metrics from its records [T, B, ...]."""

    def metrics(state, rec: WideStepRecord) -> dict:
        # Specialisation: each good's share of control by its main controller, and
        # how many distinct agents lead the G goods (G = all different leaders).
        counts = jnp.sum(jax.nn.one_hot(rec.controller, num_agents), axis=(0, 1))
        total = jnp.maximum(jnp.sum(counts, axis=-1), 1.0)
        share = jnp.max(counts, axis=-1) / total
        leaders = jax.nn.one_hot(jnp.argmax(counts, axis=-1), num_agents)  # [G, N]
        wins = jnp.sum(counts, axis=0)  # [N]
        return {
            "mean_price": jnp.mean(rec.price),
            "top_holding": jnp.mean(jnp.max(rec.allocation, axis=2)),
            "control_share": jnp.mean(share),
            "distinct_leaders": jnp.sum(jnp.max(leaders, axis=0)),
            "win_top_share": jnp.max(wins) / jnp.maximum(jnp.sum(wins), 1.0),
            "capped_fraction": jnp.mean(rec.capped),
            "equ_converged_fraction": jnp.mean(rec.equ_converged.astype(jnp.float32)),
            "equ_iterations_mean": jnp.mean(rec.equ_iterations.astype(jnp.float32)),
            "equ_iterations_max": jnp.max(rec.equ_iterations).astype(jnp.float32),
            "equ_residual_max": jnp.max(rec.equ_residual),
        }

    return metrics


def build_market(config: TrainConfig, num_envs: int) -> WideMarket:
    """The run's wide market on ``num_envs`` episodes: the one builder shared by the
    trainer and replay (``experiment/replay_wide.py``), so they cannot drift."""
    wc: WideConfig = config.algo_config
    env = BatchedEnv(config.env, num_envs, reset=config.env_reset)
    num_goods, num_actions = factors(env)
    nets = make_q_networks(
        env.spec.obs_dim,
        num_goods,
        num_actions,
        wc.hidden,
        wc.layer_norm,
        wc.norm,
        wc.joint_action,
    )
    return WideMarket(
        env,
        nets,
        wc.control == "proportional",
        wc.rent_rule,
        valuation=wc.valuation,
        budget=wc.budget,
        equ_max_iters=wc.equ_max_iters,
    )


def make_trainer(config: TrainConfig) -> Trainer:
    """Builds the wide market's trainer for one seed (see module docstring)."""
    wc: WideConfig = config.algo_config
    market = build_market(config, config.num_envs)
    nets, num_actions = market.nets, market.num_actions
    n = wc.num_agents
    num_updates = total_updates(config, wc.rollout_steps * config.num_envs)
    # Wide agents are Q-networks: entrants are fresh networks or perturbed clones.
    family = AgentFamily(
        "q_network",
        nets.init,
        lambda p, obs: jnp.max(nets.apply(p, obs)),
        lambda key, p, obs: jnp.argmax(nets.apply(p, obs)[0]).astype(jnp.int32),
        perturb_floats,
        False,
        num_actions,
    )
    learner = market_learner(
        wc,
        family,
        lambda p, obs: nets.values(p, obs),  # f32[G·A (+ A^G)], flat
        lambda params: params,
        lambda params, new: new,
        num_updates,
    )

    def market_params(params, update_index):
        explore = explore_rate(params, num_updates, update_index)
        return WideMarketParams(
            gamma=params["gamma"],
            rent=params["rent"],
            curvature=params["curvature"],
            explore=explore,
            coupling=params["coupling"],
            equ_tol=params["equ_tol"],
        )

    def make_population(key, params):
        return Population(
            params=jax.vmap(nets.init)(jax.random.split(key, n)),
            wealth=jnp.full((n,), params["initial_wealth"], jnp.float32),
            alive=jnp.ones((n,), bool),
            age=jnp.zeros((n,), jnp.int32),
            parent=jnp.full((n,), -1, jnp.int32),
        )

    return make_market_trainer(
        market=market,
        learner=learner,
        init_population=make_population,
        market_params=market_params,
        step_metrics=step_metrics(n),
        rollout_steps=wc.rollout_steps,
        default_params=sweepable_params(wc),
    )


def report(final_state, config: TrainConfig, out_dir) -> dict:
    """The runner's hook: Equ's record of the whole run into ``summary.json``.

    ``final_state`` has a leading run (seed) axis. A run in which clearing ever
    failed carries a ``warning`` naming how often and how badly: never silent.
    """
    import numpy as np

    equ = final_state.market.equ
    markets = float(np.sum(equ.markets))
    failed = float(np.sum(equ.unconverged))
    residual = float(np.max(equ.residual_max))
    out = {
        "equ_markets": markets,
        "equ_unconverged": failed,
        "equ_converged_fraction": 1.0 - failed / max(markets, 1.0),
        "equ_residual_max": residual,
        "equ_iterations_max": int(np.max(equ.iterations_max)),
    }
    if failed > 0:
        out["warning"] = (
            f"Equ did not converge in {failed:.0f} of {markets:.0f} markets "
            f"(largest excess demand left {residual:.3g}; wide.equ_tol "
            f"{config.algo_config.equ_tol:g}): raise wide.equ_max_iters or "
            f"move wide.coupling away from its bounds"
        )
    return out
