"""Training the Theorem 3.1 market by CAPITALISM (the seed paper's Algorithm 1 loop).

The network's deep market (:mod:`marketjax.embeddings.nn_market`) holds, for every
layer, a pool of ``K`` agents: constant maps to that layer's parameters. One round
of CAPITALISM on a minibatch of ``B`` episodes (one episode per sample; they share
the wealth vector, the paper's footnote 2):

1. **Entry.** In each layer's pool the ``E`` poorest agents other than the current
   owner leave (their wealth leaves with them, counted) and ``E`` entrants take
   their places: perturbations ``W + σ ε / sqrt(fan_in)``, ``b + σ ε`` of the
   current owner's program, each endowed with an ``allowance`` (counted).
2. **Bids.** Step by step (layer by layer), every agent of the step's pool appraises
   the right to transform the current state: the consumer's payment it expects if
   it acts and the prevailing owners of the later layers act after it,
   ``offset - mean_b loss_b`` (the value function, which an agent is incentivised
   to bid at equilibrium). Its bid is that appraisal capped by its wealth; agents
   without wealth cannot bid.
3. **Auction and ownership.** :func:`marketjax.embeddings.nn_market.clear` (first
   or second price) picks the owner, which pays the price to the previous step's
   owner (the founder, the original owner of the world, at step 0), and its program
   transforms the state (:func:`~marketjax.embeddings.nn_market.act`).
4. **Reward.** The last owner is paid ``offset - mean_b loss_b`` by the consumer;
   an optional rent ``ε`` is taken from every owner.

Money is conserved: ``Σ wealth + founder`` changes only by allowances, exits,
rewards and rent, each counted in ``money_in``. Nothing here computes a gradient:
selection by auctions is the only learning signal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.embeddings import mlp, nn_market
from marketjax.embeddings.prices import per_sample_loss


@struct.dataclass
class CapitalismParams:
    """Sweepable numbers of the training loop (array leaves: vmap over them)."""

    sigma: jax.Array  # f32[] entrants' perturbation scale
    allowance: jax.Array  # f32[] an entrant's endowment
    offset: jax.Array  # f32[] consumer pays offset - loss per episode
    rent: jax.Array  # f32[] ε taken from each owner's wealth per round


@struct.dataclass
class CapitalismState:
    """The market being trained and its books."""

    market: nn_market.NNMarket  # pools of K agents per layer
    owners: jax.Array  # i32[n] each layer's current owner (global agent index)
    founder: jax.Array  # f32[] account of the original owner of the world
    money_in: jax.Array  # f32[] allowances + rewards - exits - rent, counted
    loss: str = struct.field(pytree_node=False, default="mse")
    entrants: int = struct.field(pytree_node=False, default=4)


def default_params(
    offset: float,
    *,
    sigma: float = 0.1,
    allowance: float | None = None,
    rent: float = 0.0,
) -> CapitalismParams:
    """``CapitalismParams``; the allowance defaults to ``offset`` (a full bid)."""
    f = lambda v: jnp.asarray(v, jnp.float32)
    allowance = offset if allowance is None else allowance
    return CapitalismParams(f(sigma), f(allowance), f(offset), f(rent))


def init(
    params,
    *,
    activation: str = "relu",
    loss: str = "mse",
    pool: int = 8,
    entrants: int = 4,
    auction: str = "first_price",
    wealth: float = 1.0,
) -> CapitalismState:
    """The Theorem 3.1 market of ``params`` with ``pool - 1`` idle slots per layer.

    The network's agents own every layer with ``wealth``; the other slots hold
    copies of them with zero wealth (they cannot bid until entry refills them).
    """
    if not 1 <= entrants < pool:
        raise ValueError(f"need 1 <= entrants < pool, got {entrants=}, {pool=}")
    market = nn_market.from_mlp(params, activation=activation, auction=auction)
    market = market.replace(wealth=jnp.full_like(market.wealth, wealth))
    for layer in range(len(market.kernels)):
        w, b = market.kernels[layer], market.biases[layer]
        copies = pool - 1
        market = nn_market.enter(
            market,
            layer,
            jnp.broadcast_to(w, (copies, *w.shape[1:])),
            jnp.broadcast_to(b, (copies, *b.shape[1:])),
        )
    owners = jnp.arange(len(market.kernels), dtype=jnp.int32) * pool
    zero = jnp.float32(0.0)
    return CapitalismState(market, owners, zero, zero, loss=loss, entrants=entrants)


def network(state: CapitalismState) -> mlp.Layers:
    """The owners' programs: the MLP the market currently computes."""
    m, sizes = state.market, state.market.pool_sizes
    local = [state.owners[i] - sum(sizes[:i]) for i in range(len(sizes))]
    return [(m.kernels[i][j], m.biases[i][j]) for i, j in enumerate(local)]


def _enter(key, state: CapitalismState, params: CapitalismParams):
    m = state.market
    kernels, biases, wealth = list(m.kernels), list(m.biases), m.wealth
    exits = jnp.float32(0.0)
    for i, k_w in enumerate(jax.random.split(key, len(kernels))):
        pool, start = m.pool_sizes[i], sum(m.pool_sizes[:i])
        local_owner = state.owners[i] - start
        w_pool = wealth[start : start + pool]
        rank = jnp.where(jnp.arange(pool) == local_owner, jnp.inf, w_pool)
        _, slots = jax.lax.top_k(-rank, state.entrants)
        k_w, k_b = jax.random.split(k_w)
        w, b = kernels[i][local_owner], biases[i][local_owner]
        scale = params.sigma / jnp.sqrt(jnp.float32(w.shape[0]))
        shape_w, shape_b = (state.entrants, *w.shape), (state.entrants, *b.shape)
        new_w = jnp.broadcast_to(w, shape_w) + scale * jax.random.normal(k_w, shape_w)
        new_b = jnp.broadcast_to(b, shape_b) + params.sigma * jax.random.normal(
            k_b, shape_b
        )
        kernels[i] = kernels[i].at[slots].set(new_w)
        biases[i] = biases[i].at[slots].set(new_b)
        exits = exits + jnp.sum(w_pool[slots])
        wealth = wealth.at[start + slots].set(params.allowance)
    money = state.entrants * len(kernels) * params.allowance - exits
    market = m.replace(kernels=tuple(kernels), biases=tuple(biases), wealth=wealth)
    return state.replace(market=market, money_in=state.money_in + money)


def _downstream(state, layer, h):
    """Applies the prevailing owners of layers after ``layer`` to ``h f[..., m]``."""
    sigma = mlp.ACTIVATIONS[state.market.activation][0]
    layers = network(state)
    for i in range(layer + 1, len(layers)):
        a = mlp.add_bias(h @ layers[i][0], layers[i][1])
        h = a if i == len(layers) - 1 else sigma(a)
    return h


def _appraise(state, params, layer, s, target):
    """f32[K] each pool agent's value of transforming ``s f[B, m]`` at ``layer``."""
    m = state.market
    sigma = mlp.ACTIVATIONS[m.activation][0]
    last = layer == len(m.kernels) - 1
    w, b = m.kernels[layer], m.biases[layer]  # [K, in, out], [K, out]
    a = jnp.einsum("bi,kio->kbo", s, w)
    a = a + jnp.broadcast_to(b[:, None, :], a.shape)
    out = _downstream(state, layer, a if last else sigma(a))  # [K, B, out]
    t = jnp.broadcast_to(target, out.shape)
    return params.offset - jnp.mean(per_sample_loss(state.loss, out, t), axis=-1)


def step(key, state: CapitalismState, x, target, params: CapitalismParams):
    """One round of CAPITALISM on a minibatch ``x f[B, in]``, ``target f[B, out]``.

    Returns:
      ``(state, metrics)``; metrics: ``loss`` (the market's minibatch loss), ``changes``
      (owners replaced), ``founder``, ``wealth`` (total of the agents).
    """
    state = _enter(key, state, params)
    m = state.market
    s, wealth, founder, bids = x, m.wealth, state.founder, m.bids
    owners, prev = [], None
    for layer in range(len(m.kernels)):
        start, pool = sum(m.pool_sizes[:layer]), m.pool_sizes[layer]
        appraisal = _appraise(state, params, layer, s, target)
        bids = bids.at[start : start + pool].set(appraisal)
        result = nn_market.clear(m.replace(bids=bids, wealth=wealth), layer)
        owner = result.winner
        paid = jnp.where(owner >= 0, result.price, 0.0)
        wealth = wealth.at[jnp.maximum(owner, 0)].add(-paid)
        if prev is None:
            founder = founder + paid
        else:
            wealth = wealth.at[jnp.maximum(prev, 0)].add(paid)
        s = nn_market.act(m, layer, owner, s)
        owners.append(owner)
        prev = owner
    loss = jnp.mean(per_sample_loss(state.loss, s, target))
    reward = jnp.where(jnp.isfinite(loss), params.offset - loss, 0.0)
    wealth = wealth.at[jnp.maximum(prev, 0)].add(reward)
    owners = jnp.stack(owners)
    taken = params.rent * jnp.maximum(wealth[jnp.maximum(owners, 0)], 0.0)
    taken = jnp.where(owners >= 0, taken, 0.0)
    wealth = wealth.at[jnp.maximum(owners, 0)].add(-taken)
    rent = jnp.sum(taken)
    new = state.replace(
        market=m.replace(wealth=wealth, bids=bids),
        owners=jnp.where(owners >= 0, owners, state.owners),
        founder=founder,
        money_in=state.money_in + reward - rent,
    )
    metrics = {
        "loss": loss,
        "changes": jnp.sum(owners != state.owners),
        "founder": founder,
        "wealth": jnp.sum(wealth),
    }
    return new, metrics


def train(key, state, x, target, params, *, rounds: int, batch: int):
    """``rounds`` rounds of :func:`step` on random minibatches of ``(x, target)``.

    Args:
      key: a typed key.
      state: from :func:`init`.
      x: f32[D, in] the training inputs.
      target: f32[D, out] targets (one-hot rows for ``"xent"``).
      params: :class:`CapitalismParams`.
      rounds: number of rounds (static).
      batch: minibatch size (static).

    Returns:
      ``(state, metrics)`` with every metric stacked over rounds, f32[rounds].
    """

    x = jnp.asarray(x, jnp.float32)
    target = jnp.asarray(target, jnp.float32)

    def body(state, k):
        k_batch, k_step = jax.random.split(k)
        idx = jax.random.randint(k_batch, (batch,), 0, x.shape[0])
        return step(k_step, state, x[idx], target[idx], params)

    return jax.lax.scan(body, state, jax.random.split(key, rounds))
