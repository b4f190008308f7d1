"""Training a wide market (``algo: wide``): agents learn their valuations.

One update = ``rollout_steps`` steps of the wide market (``markets/wide.py``) in each
of ``num_envs`` episodes, then every agent's Q-network is trained with optax toward
its realised payoff stream per unit of each good it controlled: the factor's reward
plus γ times the next clearing price (what the next buyers pay per unit held). As
in the deep market, this is Peng's Q(λ) over the on-policy rollout with LayerNorm
networks and no replay buffer (PQN, Gallici et al. 2024): the target for good g at
step t is ``y = r_g + γ(1 − d)[(1 − λ) p'_g + λ y'_g]``, bootstrapped from the
clearing price on the last observation. An agent's bid for a good is the greedy
value ``max_a Q_i[g, a]``, so equilibrium prices approach the best agents' values
(seed Def. 2.2; the deep market's Vickrey argument, per good).

Exploration: the controller of each good acts ε-greedily (ε anneals linearly), and
the controller is drawn among the holders in proportion to their holdings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marketjax.agents.population import Population
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.config import field
from marketjax.experiment.registry import TrainConfig, Trainer, total_updates
from marketjax.markets.q_learning import (
    QLearningConfig,
    lambda_returns,
    make_explore_schedule,
    make_optimizer,
)
from marketjax.markets.wide import (
    WideMarket,
    WideMarketParams,
    WideMarketState,
    WideStepRecord,
    factors,
    make_q_networks,
    wide_books_imbalance,
)


@dataclasses.dataclass(frozen=True)
class WideConfig(QLearningConfig):
    """The ``wide:`` section of a training config."""

    num_agents: int = field(4, lo=1, doc="N agents")
    curvature: float = field(
        0.1, lo=0.0, lo_open=True, doc="c in v(x) = q.x - (c/2)|x|^2"
    )
    control: Literal["proportional", "largest"] = "proportional"
    rent: float = field(0.0, lo=0.0, doc="ε paid per unit held per step")

    def validate(self, config: TrainConfig) -> None:
        self.check_common(config, "wide")


CONFIG_CLASS = WideConfig


@struct.dataclass
class WideTrainState:
    """Everything one seed's training carries between updates."""

    market: WideMarketState
    opt_state: Any  # optax state of each agent's Q-network, leaves [N, ...]
    key: jax.Array  # typed PRNG key
    update_index: jax.Array  # i32[]


def q_loss(apply, params, obs, action, targets, mask) -> jax.Array:
    """Mean squared error of one agent's Q on the (step, good)s it controlled.

    Args:
      apply: ``(params, obs f32[D]) -> f32[G, A]``.
      params: one agent's network parameters.
      obs: f32[M, D] observations of all M = T·B steps.
      action: i32[M, G] action taken on each good.
      targets: f32[M, G] payoff-stream targets per unit of each good.
      mask: f32[M, G], 1 where this agent controlled the good.
    """
    q = jax.vmap(apply, (None, 0))(params, obs)  # [M, G, A]
    taken = jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]
    return jnp.sum(mask * (taken - targets) ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


def make_trainer(config: TrainConfig) -> Trainer:
    """Builds the wide market's trainer for one seed (see module docstring)."""
    wc: WideConfig = config.algo_config
    env = BatchedEnv(config.env, config.num_envs)
    num_goods, num_actions = factors(env)
    nets = make_q_networks(
        env.spec.obs_dim, num_goods, num_actions, wc.hidden, wc.layer_norm
    )
    market = WideMarket(env, nets, proportional=wc.control == "proportional")
    n = wc.num_agents
    steps_per_update = wc.rollout_steps * config.num_envs
    num_updates = total_updates(config, steps_per_update)
    optimizer = make_optimizer(
        wc.lr, wc.anneal_lr, wc.max_grad_norm, num_updates * wc.epochs
    )
    explore_schedule = make_explore_schedule(
        wc.explore_start, wc.explore_end, wc.explore_fraction, num_updates
    )
    grad_fn = jax.vmap(
        jax.value_and_grad(lambda p, o, a, y, m: q_loss(nets.apply, p, o, a, y, m)),
        in_axes=(0, None, None, None, 0),
    )

    def init(key):
        k_pop, k_env, k_state = jax.random.split(key, 3)
        params = jax.vmap(nets.init)(jax.random.split(k_pop, n))
        pop = Population(
            params=params,
            wealth=jnp.full((n,), wc.initial_wealth, jnp.float32),
            alive=jnp.ones((n,), bool),
            age=jnp.zeros((n,), jnp.int32),
            parent=jnp.full((n,), -1, jnp.int32),
        )
        return WideTrainState(
            market=market.init(k_env, pop),
            opt_state=jax.vmap(optimizer.init)(params),
            key=k_state,
            update_index=jnp.zeros((), jnp.int32),
        )

    def learn(state: WideMarketState, opt_state, rec: WideStepRecord, curvature):
        pop = state.population
        q_last = market.q_values(pop.params, state.obs)
        _, last_price, _ = market.equilibrium(pop, q_last, curvature)
        price_next = jnp.concatenate([rec.price[1:], last_price[None]], axis=0)
        done = jnp.broadcast_to(rec.done[..., None], rec.factor_reward.shape)
        targets = lambda_returns(
            rec.factor_reward, done, price_next, wc.gamma, wc.td_lambda
        )
        g = num_goods
        obs = rec.obs.reshape(-1, rec.obs.shape[-1])
        action = rec.action.reshape(-1, g)
        y = jax.lax.stop_gradient(targets.reshape(-1, g))
        control = rec.controller.reshape(1, -1, g)
        agents = jnp.arange(n, dtype=jnp.int32).reshape(n, 1, 1)
        masks = (control == agents).astype(jnp.float32)  # [N, M, G]

        def step(carry, _):
            params, opt_state = carry
            loss, grads = grad_fn(params, obs, action, y, masks)
            updates, opt_state = jax.vmap(optimizer.update)(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            step, (pop.params, opt_state), None, length=wc.epochs
        )
        state = state.replace(population=pop.replace(params=params))
        return state, opt_state, jnp.mean(losses[-1])

    def update(ts: WideTrainState):
        key, k_roll = jax.random.split(ts.key)
        explore = jnp.asarray(explore_schedule(ts.update_index), jnp.float32)
        params = WideMarketParams(
            gamma=jnp.float32(wc.gamma),
            rent=jnp.float32(wc.rent),
            curvature=jnp.float32(wc.curvature),
            explore=explore,
        )
        state, rec = market.rollout(k_roll, ts.market, params, wc.rollout_steps)
        state, opt_state, loss = learn(state, ts.opt_state, rec, params.curvature)
        wealth = state.population.wealth
        # Specialisation: each good's share of control by its main controller, and
        # how many distinct agents lead the G goods (G = all different leaders).
        counts = jnp.sum(jax.nn.one_hot(rec.controller, n), axis=(0, 1))  # [G, N]
        share = jnp.max(counts, axis=-1) / jnp.maximum(jnp.sum(counts, axis=-1), 1.0)
        leaders = jax.nn.one_hot(jnp.argmax(counts, axis=-1), n)  # [G, N]
        metrics = {
            "episode_return_sum": jnp.sum(rec.completed_return_sum),
            "episode_count": jnp.sum(rec.completed_count),
            "mean_price": jnp.mean(rec.price),
            "top_holding": jnp.mean(jnp.max(rec.allocation, axis=2)),
            "control_share": jnp.mean(share),
            "distinct_leaders": jnp.sum(jnp.max(leaders, axis=0)),
            "q_loss": loss,
            "explore": explore,
            "wealth_max": jnp.max(wealth),
            "wealth_min": jnp.min(wealth),
            "books_imbalance": wide_books_imbalance(state),
        }
        new = WideTrainState(state, opt_state, key, ts.update_index + 1)
        return new, metrics

    return Trainer(
        init, update, steps_per_update, lambda ts: wide_books_imbalance(ts.market)
    )
