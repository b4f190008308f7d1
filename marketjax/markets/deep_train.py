"""Training a deep market (``algo: deep``): CAPITALISM, bid learning, or both.

One update = ``rollout_steps`` market steps in each of ``num_envs`` episodes, then:

- ``learning: selection`` — the paper's training loop alone: wealth is the only
  parameter; bankrupt agents leave and entrants (mutated clones of the richest, or
  fresh draws) receive an allowance (``agents/population.py``).
- ``learning: bids`` — every agent's bid function is trained with optax toward its
  own realised payoff stream: the reward plus γ times the credit paid by the next
  buyer. Under the Vickrey rule the seller is credited the next highest bid, so the
  target is r + γ·max_a' bid(s', a'): the optimal bid is Q(s, a_agent) (seed 004;
  Chang et al. 2020), and the update is Q-learning with λ-returns (Peng's Q(λ)) over
  the on-policy rollout, LayerNorm networks and no replay buffer, as in PQN
  (Gallici et al. 2024). Each agent learns only from the steps it won. Each update
  makes ``epochs`` passes over its rollout, each pass ``minibatches`` gradient
  steps on shuffled slices (1: one full-batch step per pass).
- ``learning: both`` — the two together.

Exploration is an ε-lottery: with probability ε an episode's right goes to a
uniformly drawn valid agent, who pays no more than its own bid (ε anneals linearly).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marketjax.agents.families import AgentFamily, make_family
from marketjax.agents.population import PopulationParams, init_population, renew
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.config import ConfigError, field
from marketjax.experiment.registry import TrainConfig, Trainer, total_updates
from marketjax.markets.deep import (
    DeepMarket,
    DeepMarketParams,
    DeepMarketState,
    StepRecord,
    market_books_imbalance,
)
from marketjax.markets.q_learning import (
    QLearningConfig,
    lambda_returns,
    make_explore_schedule,
    make_optimizer,
)


@dataclasses.dataclass(frozen=True)
class DeepConfig(QLearningConfig):
    """The ``deep:`` section of a training config."""

    num_agents: int = field(8, lo=1, doc="N agent slots")
    family: Literal["linear", "mlp", "policy"] = "mlp"
    auction: Literal["bucket_brigade", "vickrey", "credit_conserving"] = "vickrey"
    rent: float = field(0.0, lo=0.0, doc="ε paid by the owner each step")
    learning: Literal["selection", "bids", "both"] = "bids"
    allowance: float = field(10.0, lo=0.0)
    exit_threshold: float = field(0.0)
    clone_prob: float = field(0.8, lo=0.0, hi=1.0)
    mutation_scale: float = field(0.05, lo=0.0)
    min_age: int = field(1, lo=0)
    minibatches: int = field(
        1, lo=1, doc="shuffled minibatches per epoch (a gradient step each)"
    )

    def validate(self, config: TrainConfig) -> None:
        self.check_common(config, "deep")
        samples = self.rollout_steps * config.num_envs
        if samples % self.minibatches:
            raise ConfigError(
                f"'deep.minibatches' ({self.minibatches}) must divide "
                f"rollout_steps * num_envs ({samples})"
            )


CONFIG_CLASS = DeepConfig


@struct.dataclass
class DeepTrainState:
    """Everything one seed's training carries between updates."""

    market: DeepMarketState
    opt_state: Any  # optax state of each agent's bid parameters, leaves [N, ...]
    key: jax.Array  # typed PRNG key
    update_index: jax.Array  # i32[]


def bid_loss(family: AgentFamily, bid_params, obs, targets, mask) -> jax.Array:
    """Mean squared error of one agent's bids on the steps it won.

    Args:
      family: the agent family.
      bid_params: one agent's bid parameters.
      obs: f32[M, D] observations of all M = T·B steps.
      targets: f32[M] payoff-stream targets.
      mask: f32[M], 1 where this agent won.
    """
    bids = jax.vmap(lambda o: family.bid({"bid": bid_params}, o))(obs)
    return jnp.sum(mask * (bids - targets) ** 2) / jnp.maximum(jnp.sum(mask), 1.0)


def make_trainer(config: TrainConfig) -> Trainer:
    """Builds the deep market's trainer for one seed (see module docstring)."""
    dc: DeepConfig = config.algo_config
    env = BatchedEnv(config.env, config.num_envs)
    family = make_family(
        dc.family, env.spec.obs_dim, env.spec.num_actions, dc.hidden, dc.layer_norm
    )
    market = DeepMarket(env, family, dc.auction)
    steps_per_update = dc.rollout_steps * config.num_envs
    num_updates = total_updates(config, steps_per_update)
    learn_bids = dc.learning in ("bids", "both")
    select = dc.learning in ("selection", "both")
    optimizer = make_optimizer(
        dc.lr, dc.anneal_lr, dc.max_grad_norm, num_updates * dc.epochs * dc.minibatches
    )
    explore_schedule = make_explore_schedule(
        dc.explore_start, dc.explore_end, dc.explore_fraction, num_updates
    )
    pop_params = PopulationParams(
        allowance=jnp.float32(dc.allowance),
        exit_threshold=jnp.float32(dc.exit_threshold),
        clone_prob=jnp.float32(dc.clone_prob),
        mutation_scale=jnp.float32(dc.mutation_scale),
        min_age=jnp.int32(dc.min_age),
    )
    grad_fn = jax.vmap(
        jax.value_and_grad(lambda p, o, y, m: bid_loss(family, p, o, y, m)),
        in_axes=(0, None, None, 0),
    )

    def init(key):
        k_pop, k_env, k_state = jax.random.split(key, 3)
        pop = init_population(k_pop, family, dc.num_agents, dc.initial_wealth)
        return DeepTrainState(
            market=market.init(k_env, pop),
            opt_state=jax.vmap(optimizer.init)(pop.params["bid"]),
            key=k_state,
            update_index=jnp.zeros((), jnp.int32),
        )

    def learn(state: DeepMarketState, opt_state, rec: StepRecord, k_boot, explore):
        pop = state.population
        _, _, last = market.auction(k_boot, pop, state.obs, jnp.float32(0.0))
        credit_next = jnp.concatenate([rec.credit[1:], last.credit[None]], axis=0)
        targets = lambda_returns(
            rec.reward, rec.done, credit_next, dc.gamma, dc.td_lambda
        )
        obs = rec.obs.reshape(-1, rec.obs.shape[-1])
        winners = rec.winner.reshape(-1)
        masks = (winners[None, :] == jnp.arange(pop.size)[:, None]).astype(jnp.float32)
        y = jax.lax.stop_gradient(targets.reshape(-1))

        def step(carry, batch):
            bid_params, opt_state = carry
            o, t, m = batch
            loss, grads = grad_fn(bid_params, o, t, m)
            updates, opt_state = jax.vmap(optimizer.update)(
                grads, opt_state, bid_params
            )
            return (optax.apply_updates(bid_params, updates), opt_state), loss

        def epoch(carry, k_epoch):
            if dc.minibatches == 1:
                return step(carry, (obs, y, masks))
            k = dc.minibatches
            perm = jax.random.permutation(k_epoch, y.shape[0]).reshape(k, -1)
            batches = (obs[perm], y[perm], jnp.moveaxis(masks[:, perm], 1, 0))
            carry, loss = jax.lax.scan(step, carry, batches)
            return carry, jnp.mean(loss, axis=0)

        k_shuffle = jax.random.fold_in(k_boot, 1)
        (bid_params, opt_state), losses = jax.lax.scan(
            epoch,
            (pop.params["bid"], opt_state),
            jax.random.split(k_shuffle, dc.epochs),
        )
        params = {**pop.params, "bid": bid_params}
        state = state.replace(population=pop.replace(params=params))
        return state, opt_state, jnp.mean(losses[-1])

    def update(ts: DeepTrainState):
        key, k_roll, k_boot, k_renew = jax.random.split(ts.key, 4)
        explore = jnp.asarray(explore_schedule(ts.update_index), jnp.float32)
        params = DeepMarketParams(jnp.float32(dc.gamma), jnp.float32(dc.rent), explore)
        state, rec = market.rollout(k_roll, ts.market, params, dc.rollout_steps)
        opt_state, loss = ts.opt_state, jnp.float32(0.0)
        if learn_bids:
            state, opt_state, loss = learn(state, opt_state, rec, k_boot, explore)
        entries = jnp.float32(0.0)
        if select:
            renewal = renew(k_renew, family, state.population, pop_params)
            books = state.books.record(
                bank_delta=renewal.exits_to_bank, allowances=renewal.allowances
            )
            state = market.forget_owners(state, renewal.replaced)
            state = state.replace(population=renewal.population, books=books)
            fresh_opt = jax.vmap(optimizer.init)(renewal.population.params["bid"])
            opt_state = jax.tree.map(
                lambda new, old: jnp.where(
                    renewal.replaced.reshape((-1,) + (1,) * (old.ndim - 1)), new, old
                ),
                fresh_opt,
                opt_state,
            )
            entries = renewal.num_entries.astype(jnp.float32)
        wealth = state.population.wealth
        metrics = {
            "episode_return_sum": jnp.sum(rec.completed_return_sum),
            "episode_count": jnp.sum(rec.completed_count),
            "mean_price": jnp.mean(rec.paid),
            "mean_top_bid": jnp.mean(rec.top_bid),
            "bank_acted_frac": jnp.mean((rec.winner < 0).astype(jnp.float32)),
            "bid_loss": loss,
            "explore": explore,
            "entries": entries,
            "wealth_max": jnp.max(wealth),
            "wealth_min": jnp.min(wealth),
            "books_imbalance": market_books_imbalance(state),
        }
        new = DeepTrainState(state, opt_state, key, ts.update_index + 1)
        return new, metrics

    return Trainer(
        init, update, steps_per_update, lambda ts: market_books_imbalance(ts.market)
    )
