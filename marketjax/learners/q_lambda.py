"""Q(λ) bid learning: every agent regresses its value on its own payoff stream.

An agent that held a payoff stream (the right to act, or a good) at step t is paid
the reward and, when it sells, γ times what the next buyer pays. Under the Vickrey
rule the next buyer pays the next highest bid, so the target is r + γ·max bid(s'):
the optimal bid is Q(s, a_agent) (seed 004; Chang et al. 2020), and the update is
Peng's Q(λ) over the on-policy rollout with no replay buffer, as in PQN (Gallici et
al. 2024). Each update makes ``epochs`` passes, each of ``minibatches`` gradient
steps on shuffled slices of the rollout.

Learning costs O(samples), not O(agents × samples): each minibatch's samples are
grouped by the agent that held them (:func:`group_by_owner`), every agent gets a
buffer of ``capacity`` slots, and an agent that held more samples than that learns
from a uniform random subset of them (an unbiased minibatch of its own data).

Agents that share a trunk (``features``: the ``trunk`` family) need no buffers:
the trunk reads each sample once, each sample's owner's head is gathered to it,
and every owner learns from all of its samples (:func:`trunk_loss`); the trunk
itself learns the mean error over all owned samples, with its own Adam.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from marketjax.learners.base import Experience, Learner, LearnerOutput, where_replaced
from marketjax.learners.trunk_loss import sum_over_slices, trunk_loss


def lambda_returns(
    reward: jax.Array, done: jax.Array, credit_next: jax.Array, gamma, lam
) -> jax.Array:
    """Peng's Q(λ) targets of the realised payoff stream, computed backwards.

    Args:
      reward: f32[T, ...] reward collected by the holder at each step.
      done: bool[T, ...] the episode ended at step t (no credit follows).
      credit_next: f32[T, ...] credit the next buyer pays for the stream after t.
      gamma: discount γ.
      lam: λ in [0, 1]; 0 gives the one-step payoff r_t + γ·credit_{t+1}.

    Returns:
      f32[T, ...] targets y_t = r_t + γ(1 − d_t)[(1 − λ)·c_{t+1} + λ·y_{t+1}], with
      y_T = c_T (bootstrap from the auction on the last observation).
    """

    def back(next_y, xs):
        r, d, c = xs
        y = r + gamma * (1.0 - d) * ((1.0 - lam) * c + lam * next_y)
        return y, y

    _, ys = jax.lax.scan(
        back,
        credit_next[-1],
        (reward, done.astype(reward.dtype), credit_next),
        reverse=True,
    )
    return ys


def make_optimizer(
    lr: jax.Array, anneal: bool, max_grad_norm: jax.Array, num_steps: int
) -> optax.GradientTransformation:
    """Global-norm clipping then Adam; lr annealed linearly to 0 over ``num_steps``
    gradient steps if ``anneal``. ``lr`` and ``max_grad_norm`` may be traced."""
    rate = optax.linear_schedule(lr, 0.0, num_steps) if anneal else lr
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(rate))


def linear_anneal(start, end, fraction, num_updates: int, index) -> jax.Array:
    """ε at update ``index``: linear from ``start`` to ``end`` over the first
    ``fraction`` of ``num_updates`` updates, then held (all may be traced)."""
    horizon = jnp.maximum(1.0, jnp.floor(fraction * num_updates))
    progress = jnp.clip(jnp.asarray(index, jnp.float32) / horizon, 0.0, 1.0)
    return jnp.asarray(start + (end - start) * progress, jnp.float32)


COUNTING_MAX_AGENTS = 256  # above this, group by sorting instead of counting
# An agent's minibatch above this many samples is differentiated in slices of at
# most this size and the gradients summed: on CPU a [C, 64] activation past ~4096
# rows leaves the cache, and one update at B = 4096 ran 2.7x slower per sample
# than in slices (issue 17). Below it nothing changes (the same program).
MICRO_SAMPLES = 4096


def group_by_owner(
    key: jax.Array, owner: jax.Array, num_agents: int, capacity: int
) -> tuple[jax.Array, jax.Array]:
    """Each agent's own samples, gathered into a fixed-size buffer.

    Three regimes, fastest first:

    - ``capacity >= M``: every agent may keep every sample, so nothing is grouped:
      each agent sees all M samples under a mask (the N·M masked loss; cheap for
      small N, exactly the first wave's computation);
    - ``N <= COUNTING_MAX_AGENTS``: a counting pass (a cumulative sum over one-hot
      owners, O(M·N) integer adds) ranks each sample among its owner's;
    - otherwise a sort by owner, O(M log M).

    An agent that holds more than ``capacity`` samples keeps a random cyclic window
    of them (a random rotation of the sample order, then the first ``capacity``;
    the sort path keeps a uniform random subset).

    Args:
      key: randomises which samples an over-full agent keeps.
      owner: i32[M] agent that holds each sample (-1: nobody; dropped).
      num_agents: N.
      capacity: C, buffer slots per agent.

    Returns:
      ``(index i32[N, C], mask bool[N, C])``: agent i's j-th sample is
      ``index[i, j]`` where ``mask[i, j]``.
    """
    m = owner.shape[0]
    agents = jnp.arange(num_agents, dtype=owner.dtype)
    if capacity >= m:
        index = jnp.broadcast_to(jnp.arange(m, dtype=jnp.int32), (num_agents, m))
        return index, owner[None, :] == agents[:, None]
    if num_agents <= COUNTING_MAX_AGENTS:
        shift = jax.random.randint(key, (), 0, m)
        order = (jnp.arange(m, dtype=jnp.int32) + shift) % m
        group = owner[order]
        onehot = (group[:, None] == agents[None, :]).astype(jnp.int32)  # [M, N]
        rank = jnp.sum(jnp.cumsum(onehot, axis=0) * onehot, axis=1) - 1
        valid = group >= 0
    else:
        group = jnp.where(owner >= 0, owner, num_agents)
        noise = jax.random.uniform(key, (m,))
        order = jnp.lexsort((noise, group)).astype(jnp.int32)  # by agent, random
        group = group[order]
        counts = jnp.zeros((num_agents + 1,), jnp.int32).at[group].add(1)
        starts = jnp.cumsum(counts) - counts
        rank = jnp.arange(m, dtype=jnp.int32) - starts[group]
        valid = group < num_agents
    keep = valid & (rank < capacity)
    row = jnp.where(keep, group, num_agents)  # out of range: dropped
    col = jnp.where(keep, rank, 0)
    index = jnp.zeros((num_agents, capacity), jnp.int32)
    index = index.at[row, col].set(order, mode="drop")
    mask = jnp.zeros((num_agents, capacity), bool).at[row, col].set(True, mode="drop")
    return index, mask


def agent_capacity(samples: int, num_agents: int, factor: float) -> int:
    """Buffer slots per agent: ``factor`` times a fair share, at most ``samples``."""
    return max(1, min(samples, math.ceil(factor * samples / num_agents)))


def q_lambda(
    value_fn: Callable[[Any, jax.Array], jax.Array],
    get: Callable[[Any], Any],
    put: Callable[[Any, Any], Any],
    *,
    num_updates: int,
    epochs: int,
    minibatches: int,
    capacity_factor: float,
    anneal_lr: bool,
    features: Callable[[Any, jax.Array], jax.Array] | None = None,
) -> Learner:
    """Builds the Q(λ) learner (see module docstring).

    Args:
      value_fn: ``(trainable params of ONE agent, obs f32[D]) -> f32[O]``, the values
        the agent bids with (deep market: its bid, O = 1; wide market: Q per good
        and action, O = G·A).
      get: ``population params -> trainable params`` (leaves [N, ...]).
      put: ``(population params, trainable params) -> population params``.
      num_updates: updates of the run (the learning-rate annealing horizon).
      epochs: passes over each update's samples.
      minibatches: gradient steps per pass.
      capacity_factor: an agent's buffer is this many fair shares (M / N) of a
        minibatch; >= N keeps every sample.
      anneal_lr: anneal the learning rate linearly to 0 over the run.
      features: ``(population.shared, obs f32[S, D]) -> f32[S, H]``, a trunk all
        agents read (``AgentFamily.features``); ``value_fn`` then reads the feature
        f32[H], the trunk learns too (its own Adam, state ``(heads, trunk)``) and
        ``capacity_factor`` is unused: every owner learns from all its samples.

    Params read: ``lr``, ``max_grad_norm``, ``gamma``, ``td_lambda``.
    """
    grad_steps = num_updates * epochs * minibatches

    def optimizer(params):
        return make_optimizer(
            params["lr"], anneal_lr, params["max_grad_norm"], grad_steps
        )

    # The optimizer state's structure does not depend on the numbers.
    dummy = {"lr": 1.0, "max_grad_norm": 1.0}

    def init_heads(population):
        return jax.vmap(optimizer(dummy).init)(get(population.params))

    def init(population):
        heads = init_heads(population)
        if features is None:
            return heads
        return heads, optimizer(dummy).init(population.shared)

    def loss(agent_params, obs, output, target, mask):
        values = jax.vmap(value_fn, (None, 0))(agent_params, obs)  # [C, O]
        taken = jnp.take_along_axis(values, output[:, None], axis=-1)[:, 0]
        err = jnp.where(mask, taken - target, 0.0)
        return jnp.sum(err**2) / jnp.maximum(jnp.sum(mask.astype(err.dtype)), 1.0)

    grad_fn = jax.vmap(jax.value_and_grad(loss))

    def loss_sum(agent_params, obs, output, target, mask):
        values = jax.vmap(value_fn, (None, 0))(agent_params, obs)  # [c, O]
        taken = jnp.take_along_axis(values, output[:, None], axis=-1)[:, 0]
        return jnp.sum(jnp.where(mask, taken - target, 0.0) ** 2)

    sum_grad_fn = jax.vmap(jax.value_and_grad(loss_sum))

    def sliced_grads(trainable, obs, output, y, k, chosen, mask):
        """``grad_fn``'s (value, grads) summed over slices of <= MICRO_SAMPLES."""
        n, c = chosen.shape
        j = -(-c // MICRO_SAMPLES)
        size = -(-c // j)
        pad = j * size - c
        chosen = jnp.pad(chosen, ((0, 0), (0, pad)))
        mask = jnp.pad(mask, ((0, 0), (0, pad)))
        slices = (
            chosen.reshape(n, j, size).swapaxes(0, 1),
            mask.reshape(n, j, size).swapaxes(0, 1),
        )

        def add(acc, xs):
            ids, m = xs
            value, grads = sum_grad_fn(trainable, obs[ids // k], output[ids], y[ids], m)
            return jax.tree.map(jnp.add, acc, (value, grads)), None

        zero = (jnp.zeros((n,), jnp.float32), jax.tree.map(jnp.zeros_like, trainable))
        (total, grads), _ = jax.lax.scan(add, zero, slices)
        count = jnp.maximum(jnp.sum(mask.astype(jnp.float32), axis=1), 1.0)  # [N]
        grads = jax.tree.map(
            lambda g: g / count.reshape((n,) + (1,) * (g.ndim - 1)), grads
        )
        return total / count, grads

    def update(key, opt_state, population, exp: Experience, params):
        n = population.size
        t, b, k = exp.owner.shape
        done = jnp.broadcast_to(exp.done[..., None], exp.reward.shape)
        targets = lambda_returns(
            exp.reward, done, exp.credit_next, params["gamma"], params["td_lambda"]
        )
        m = t * b * k
        obs = exp.obs.reshape(t * b, -1)
        owner = exp.owner.reshape(m)
        output = exp.output.reshape(m)
        y = jax.lax.stop_gradient(targets.reshape(m))
        per_batch = m // minibatches
        capacity = agent_capacity(per_batch, n, capacity_factor)
        tx = optimizer(params)

        def step(carry, xs):
            trainable, opt_state = carry
            sample_ids, k_group = xs
            index, mask = group_by_owner(k_group, owner[sample_ids], n, capacity)
            chosen = sample_ids[index]  # [N, C] sample ids
            if capacity > MICRO_SAMPLES:
                value, grads = sliced_grads(trainable, obs, output, y, k, chosen, mask)
            else:
                value, grads = grad_fn(
                    trainable, obs[chosen // k], output[chosen], y[chosen], mask
                )
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts
                updates, opt_state = jax.vmap(tx.update)(grads, opt_state, trainable)
            trainable = optax.apply_updates(trainable, updates)
            return (trainable, opt_state), jnp.mean(value)

        trunk_grad = jax.value_and_grad(
            functools.partial(trunk_loss, value_fn, features), argnums=(0, 1)
        )

        def trunk_step(carry, xs):
            (trainable, shared), (opt_state, shared_opt) = carry
            ids = xs[0]  # i32[P] this minibatch's sample ids
            own = owner[ids]
            held = own >= 0
            safe = jnp.maximum(own, 0)
            counts = jax.ops.segment_sum(held.astype(jnp.float32), safe, n)  # [N]
            per = counts[safe]
            weight = jnp.where(held, 1.0 / jnp.maximum(per, 1.0), 0.0)  # f32[P]
            share = per / jnp.maximum(jnp.sum(held.astype(jnp.float32)), 1.0)
            cols = (ids, safe, weight, share)

            def grads_of(part):
                i, o, w, f = part
                return trunk_grad(
                    trainable, shared, obs[i // k], o, output[i], y[i], w, f
                )

            value, (grads, shared_grads) = sum_over_slices(
                grads_of, cols, MICRO_SAMPLES
            )
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts
                updates, opt_state = jax.vmap(tx.update)(grads, opt_state, trainable)
                shared_updates, shared_opt = tx.update(shared_grads, shared_opt, shared)
            trainable = optax.apply_updates(trainable, updates)
            shared = optax.apply_updates(shared, shared_updates)
            return ((trainable, shared), (opt_state, shared_opt)), value / n

        def epoch(carry, k_epoch):
            k_perm, k_groups = jax.random.split(k_epoch)
            order = jnp.arange(m, dtype=jnp.int32)
            if minibatches > 1:
                order = jax.random.permutation(k_perm, m).astype(jnp.int32)
            batches = order[: per_batch * minibatches].reshape(minibatches, per_batch)
            keys = jax.random.split(k_groups, minibatches)
            return jax.lax.scan(
                step if features is None else trunk_step, carry, (batches, keys)
            )

        trainable = get(population.params)
        carry = (trainable, opt_state)
        if features is not None:
            carry = ((trainable, population.shared), opt_state)
        carry, losses = jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
        trainable, opt_state = carry
        if features is not None:
            trainable, shared = trainable
            population = population.replace(shared=shared)
        population = population.replace(params=put(population.params, trainable))
        out = LearnerOutput(
            population,
            opt_state,
            {"bid_loss": jnp.mean(losses[-1])},
            jnp.zeros((n,), bool),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
        )
        return out

    def reset(opt_state, replaced, population):
        fresh = init_heads(population)
        if features is None:
            return where_replaced(replaced, fresh, opt_state)
        heads, trunk = opt_state  # the trunk's state is everyone's: kept
        return where_replaced(replaced, fresh, heads), trunk

    return Learner(init, update, reset)
