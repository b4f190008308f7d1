"""PPO on gymnax environments, run by the same runner as the markets.

Proximal Policy Optimization (Schulman et al. 2017) with generalised advantage
estimation (Schulman et al. 2016), written in purejaxrl's style: one update is a
``lax.scan`` over ``num_steps`` steps of ``num_envs`` parallel episodes, then
``update_epochs`` passes of ``num_minibatches`` shuffled minibatches, each a clipped
surrogate + value + entropy gradient step (global-norm clipping, Adam, linearly
annealed learning rate). The runner scans over updates and vmaps over seeds, so a
whole run is one compiled program.

The algorithm registers as ``algo: ppo``: this module defines ``CONFIG_CLASS`` (the
``ppo:`` section of a training config) and ``make_trainer(config) -> Trainer``.
Discrete action spaces use a categorical policy, Box spaces a diagonal Gaussian
whose samples are clipped to the bounds before they reach the environment (the
log-probability is that of the unclipped sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from marketjax.algos.ppo import losses as L
from marketjax.algos.ppo.networks import ActorCritic
from marketjax.core.axes import axes
from marketjax.core.config import ConfigError, field
from marketjax.core.schema import TrainConfig, Trainer, sweepable_params, total_updates
from marketjax.envs.gymnax_adapter import BatchedEnv, EpisodeStats, track_episodes


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The ``ppo:`` section of a training config (defaults: purejaxrl CartPole)."""

    num_steps: int = field(
        128, lo=1, hi=100_000, doc="env steps per episode slot per update"
    )
    update_epochs: int = field(4, lo=1, hi=1000, doc="passes over each batch")
    num_minibatches: int = field(4, lo=1, hi=1 << 20, doc="minibatches per epoch")
    lr: float = field(2.5e-4, lo=0.0, lo_open=True, hi=10.0, doc="Adam learning rate")
    anneal_lr: bool = field(True, doc="anneal lr linearly to 0 over the run")
    adam_eps: float = field(1e-5, lo=0.0, lo_open=True, hi=1.0, doc="Adam ε")
    gamma: float = field(0.99, lo=0.0, hi=1.0, doc="discount")
    gae_lambda: float = field(0.95, lo=0.0, hi=1.0, doc="GAE lambda")
    clip_eps: float = field(
        0.2, lo=0.0, lo_open=True, hi=1e3, doc="ratio clipping range"
    )
    clip_value: bool = field(True, doc="clip the value loss like the ratio")
    ent_coef: float = field(0.01, lo=0.0, hi=1e3, doc="entropy bonus coefficient")
    vf_coef: float = field(0.5, lo=0.0, hi=1e3, doc="value loss coefficient")
    max_grad_norm: float = field(
        0.5, lo=0.0, lo_open=True, hi=1e30, doc="gradient clipping (global norm)"
    )
    normalize_advantages: bool = field(True, doc="per-minibatch advantage norm")
    bootstrap_truncation: bool = field(
        True, doc="bootstrap V(final obs) when an episode is cut by a time limit"
    )
    reward_scale: float = field(
        1.0, lo=0.0, lo_open=True, hi=1e6, doc="learning rewards x"
    )
    hidden: tuple[int, ...] = field(
        (64, 64), lo=1, hi=65_536, doc="hidden widths of both MLPs"
    )
    activation: Literal["tanh", "relu"] = field("tanh", doc="hidden activation")
    log_std_init: float = field(
        0.0, lo=-20.0, hi=20.0, doc="Box actions: initial log std"
    )

    def validate(self, config: TrainConfig) -> None:
        """Cross-key checks (called by ``parse_train_config``)."""
        batch = config.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ConfigError(
                f"'ppo.num_minibatches' ({self.num_minibatches}) must divide "
                f"num_envs * ppo.num_steps ({batch})"
            )
        shards = config.runner.mesh.episodes
        if shards > 1 and (config.num_envs // shards * self.num_steps) % (
            self.num_minibatches
        ):
            raise ConfigError(
                f"'ppo.num_minibatches' ({self.num_minibatches}) must divide each "
                f"episode shard's samples (num_envs / runner.mesh.episodes * "
                f"ppo.num_steps = {config.num_envs // shards * self.num_steps})"
            )
        if any(w < 1 for w in self.hidden):
            raise ConfigError("'ppo.hidden' widths must be >= 1")


CONFIG_CLASS = PPOConfig


@struct.dataclass
class PPOState:
    """The whole training state of one seed (a pytree of arrays only).

    ``params`` and ``opt_state`` are the flax parameters and the optax state of
    :class:`~marketjax.algos.ppo.networks.ActorCritic`; ``env_state`` is the
    gymnax state of the B episodes.
    """

    params: Any  # flax params of ActorCritic
    opt_state: Any  # optax state (NamedTuples of arrays)
    env_state: Any = axes("B")  # gymnax env state, leaves with leading axis B
    obs: jax.Array = axes("B", "D")  # f32[B, obs_dim] current observations
    stats: EpisodeStats = axes("B")  # running returns of the B episodes
    key: jax.Array  # typed PRNG key


class Transition(NamedTuple):
    """One step of B episodes, stacked to [T, B, ...] by the rollout scan."""

    obs: jax.Array  # f32[T, B, obs_dim]
    action: jax.Array  # i32[T, B] (discrete) or f32[T, B, A] (Box)
    log_prob: jax.Array  # f32[T, B]
    value: jax.Array  # f32[T, B]
    reward: jax.Array  # f32[T, B]
    done: jax.Array  # bool[T, B]
    truncated: jax.Array  # f32[T, B] 1 if cut by the time limit (not terminated)
    final_obs: jax.Array  # f32[T, B, obs_dim] last observation of ended episodes


class Batch(NamedTuple):
    """Flattened training samples (leading axis M = minibatch size)."""

    obs: jax.Array  # f32[M, obs_dim]
    action: jax.Array  # i32[M] or f32[M, A]
    log_prob: jax.Array  # f32[M]
    value: jax.Array  # f32[M]
    advantage: jax.Array  # f32[M]
    target: jax.Array  # f32[M]


def num_updates(config: TrainConfig) -> int:
    """Updates the runner will make (the lr annealing horizon)."""
    return total_updates(config, config.num_envs * config.algo_config.num_steps)


def make_optimizer(
    config: TrainConfig, params: dict | None = None
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam, lr annealed linearly to 0 if asked.

    ``params`` (the sweepable numbers, possibly traced) default to the config's.
    """
    cfg: PPOConfig = config.algo_config
    p = sweepable_params(cfg) if params is None else params
    lr: Any = p["lr"]
    if cfg.anneal_lr:
        steps = num_updates(config) * cfg.update_epochs * cfg.num_minibatches
        lr = optax.linear_schedule(p["lr"], 0.0, steps)
    return optax.chain(
        optax.clip_by_global_norm(p["max_grad_norm"]),
        optax.adam(lr, eps=p["adam_eps"]),
    )


def make_network(cfg: PPOConfig, spec) -> ActorCritic:
    """The actor-critic of a ``ppo:`` section for an env's spec."""
    return ActorCritic(
        num_actions=spec.num_actions,
        discrete=spec.discrete,
        hidden=tuple(cfg.hidden),
        activation=cfg.activation,
        log_std_init=cfg.log_std_init,
    )


def make_trainer(config: TrainConfig) -> Trainer:
    """Builds PPO's ``init(key)`` and ``update(state)`` for one seed of ``config``."""
    cfg: PPOConfig = config.algo_config
    env = BatchedEnv(config.env, config.num_envs, reset=config.env_reset)
    spec = env.spec
    network = make_network(cfg, spec)
    batch_size = config.num_envs * cfg.num_steps
    minibatch_size = batch_size // cfg.num_minibatches
    # Episode shards (runner.mesh.episodes): minibatches are shuffled per shard.
    shards = config.runner.mesh.episodes

    def log_prob_entropy(policy_out, log_std, action):
        if spec.discrete:
            return (
                L.categorical_log_prob(policy_out, action),
                L.categorical_entropy(policy_out),
            )
        return (
            L.normal_log_prob(policy_out, log_std, action),
            L.normal_entropy(log_std),
        )

    def sample(key, policy_out, log_std):
        if spec.discrete:
            action = L.categorical_sample(key, policy_out)
            return action, L.categorical_log_prob(policy_out, action)
        action = L.normal_sample(key, policy_out, log_std)
        return action, L.normal_log_prob(policy_out, log_std, action)

    def init(key: jax.Array, p: dict) -> PPOState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = env.reset(env_key)
        params = network.init(net_key, obs)
        if not spec.discrete:  # the initial log std is a sweepable number
            log_std = params["params"]["log_std"]
            params = {
                "params": {
                    **params["params"],
                    "log_std": jnp.full_like(log_std, p["log_std_init"]),
                }
            }
        return PPOState(
            params=params,
            opt_state=make_optimizer(config, p).init(params),
            env_state=env_state,
            obs=obs,
            stats=EpisodeStats.zeros(config.num_envs),
            key=key,
        )

    def env_step(params, carry, step_key):
        env_state, obs, stats = carry
        act_key, env_key = jax.random.split(step_key)
        policy_out, log_std, value = network.apply(params, obs)
        action, log_prob = sample(act_key, policy_out, log_std)
        env_action = action
        if not spec.discrete:
            env_action = jnp.clip(action, spec.action_low, spec.action_high)
        next_obs, env_state, reward, done, info = env.step(
            env_key, env_state, env_action
        )
        stats, ret_sum, count = track_episodes(stats, reward, done)
        truncated = info.get("truncated", jnp.zeros_like(done))
        terminated = info.get("terminated", done)
        cut = jnp.logical_and(truncated, jnp.logical_not(terminated))
        transition = Transition(
            obs=obs,
            action=action,
            log_prob=log_prob,
            value=value,
            reward=reward,
            done=done,
            truncated=jnp.logical_and(cut, done).astype(jnp.float32),
            final_obs=info["final_observation"],
        )
        return (env_state, next_obs, stats), (transition, ret_sum, count)

    def advantages(params, traj: Transition, last_obs, p):
        _, _, last_value = network.apply(params, last_obs)
        rewards = traj.reward * p["reward_scale"]
        if cfg.bootstrap_truncation:  # V(final obs) only when some step was cut
            rewards = L.bootstrap_truncated(
                rewards,
                traj.truncated,
                lambda: network.apply(params, traj.final_obs)[2],
                p["gamma"],
            )
        return L.gae(
            rewards, traj.value, traj.done, last_value, p["gamma"], p["gae_lambda"]
        )

    def loss_fn(params, batch: Batch, p):
        policy_out, log_std, value = network.apply(params, batch.obs)
        log_prob, entropy = log_prob_entropy(policy_out, log_std, batch.action)
        return L.ppo_loss(
            log_prob,
            entropy,
            value,
            batch.log_prob,
            batch.value,
            batch.advantage,
            batch.target,
            clip_eps=p["clip_eps"],
            vf_coef=p["vf_coef"],
            ent_coef=p["ent_coef"],
            clip_value=cfg.clip_value,
            normalize_advantages=cfg.normalize_advantages,
        )

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def minibatch_step(carry, batch: Batch, p):
        params, opt_state = carry
        (loss, parts), grads = grad_fn(params, batch, p)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts
            tx = make_optimizer(config, p)
            updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), (loss, parts)

    def flatten(x):
        """[T, B, ...] -> the samples: [T·B, ...], or [E, B/E·T, ...] with shards."""
        if shards == 1:
            return x.reshape((batch_size, *x.shape[2:]))
        x = jnp.swapaxes(x, 0, 1)  # episodes first: a block is one device's episodes
        return x.reshape((shards, batch_size // shards, *x.shape[2:]))

    def local_minibatches(epoch_key, samples: Batch):
        """Each device shuffles its own episodes' samples; minibatch k joins the
        k-th slice of every shard, so no sample crosses a device."""
        per_shard = batch_size // shards
        keys = jax.random.split(epoch_key, shards)
        perm = jax.vmap(lambda k: jax.random.permutation(k, per_shard))(keys)

        def split(x):  # [E, M/E, ...] -> [K, M/K, ...]
            x = jax.vmap(lambda a, q: jnp.take(a, q, axis=0))(x, perm)
            x = x.reshape((shards, cfg.num_minibatches, -1, *x.shape[2:]))
            x = jnp.swapaxes(x, 0, 1)
            return x.reshape((cfg.num_minibatches, minibatch_size, *x.shape[3:]))

        return jax.tree.map(split, samples)

    def epoch(carry, epoch_key, samples: Batch, p):
        if shards > 1:
            minibatches = local_minibatches(epoch_key, samples)
            return jax.lax.scan(
                lambda c, b: minibatch_step(c, b, p), carry, minibatches
            )
        perm = jax.random.permutation(epoch_key, batch_size)
        minibatches = jax.tree.map(
            lambda x: jnp.take(x, perm, axis=0).reshape(
                (cfg.num_minibatches, minibatch_size, *x.shape[1:])
            ),
            samples,
        )
        return jax.lax.scan(lambda c, b: minibatch_step(c, b, p), carry, minibatches)

    def update(state: PPOState, p: dict) -> tuple[PPOState, dict]:
        key, rollout_key, epoch_key = jax.random.split(state.key, 3)
        (env_state, obs, stats), (traj, ret_sums, counts) = jax.lax.scan(
            lambda c, k: env_step(state.params, c, k),
            (state.env_state, state.obs, state.stats),
            jax.random.split(rollout_key, cfg.num_steps),
        )
        adv, targets = advantages(state.params, traj, obs, p)
        samples = jax.tree.map(
            flatten,
            Batch(traj.obs, traj.action, traj.log_prob, traj.value, adv, targets),
        )
        (params, opt_state), (loss, parts) = jax.lax.scan(
            lambda c, k: epoch(c, k, samples, p),
            (state.params, state.opt_state),
            jax.random.split(epoch_key, cfg.update_epochs),
        )
        metrics = {
            "episode_return_sum": jnp.sum(ret_sums),
            "episode_count": jnp.sum(counts),
            "loss": jnp.mean(loss),
            **{name: jnp.mean(v) for name, v in parts._asdict().items()},
        }
        new_state = PPOState(params, opt_state, env_state, obs, stats, key)
        return new_state, metrics

    return Trainer(
        init=init,
        update=update,
        steps_per_update=batch_size,
        params=sweepable_params(cfg),
    )
