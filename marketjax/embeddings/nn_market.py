"""Neural networks as markets: the deep market of the seed paper's Theorem 3.1.

The proof's construction, made concrete. For an MLP ``f = f_n ∘ ... ∘ f_1`` with
``f_i(x) = σ(x @ W_i + b_i)`` (the last layer linear):

* the state space is the direct sum ``S_0 ⊕ S_1 ⊕ ... ⊕ S_n`` of the layers' spaces
  (``S_0`` the input, ``S_i = R^{m_i}``); the state is carried as one array per
  component;
* the agents are constant maps to layer parameters: agent ``a`` holds a program
  ``(W_a, b_a)`` acting on one component ``S_{d(a)}`` (its *domain*) and writing
  ``σ(s @ W_a + b_a)`` into ``S_{d(a)+1}``; its bid part is a constant ``β_a``,
  offered only when the observation lies in its domain (elsewhere its action space
  is empty, so it does not take part);
* every step of the forward pass runs Algorithm 1's MARKET: each agent bids
  ``min(β_a, w_a)`` (capped by wealth; agents without wealth cannot bid), the
  auction (:func:`marketjax.mechanisms.auctions.first_price` or ``second_price``)
  picks the owner, and the owner's program transforms the state;
* wealth is non-zero only for the agents whose parameters are the network's, so the
  market's forward pass is the network's (:func:`forward` equals the MLP).

Further agents (rivals, entrants of CAPITALISM training) join a layer's pool with
:func:`enter`. A forward pass is batched over any leading axes of ``x``: the
parallel episodes share one wealth vector (the paper's footnote 2), and since the
bids are constant maps every episode sees the same auction, which is run once per
step. ``vmap`` over an :class:`NNMarket` runs a batch of networks.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.embeddings import mlp
from marketjax.mechanisms import auctions

AUCTIONS = auctions.AUCTIONS  # the one vocabulary of auction rules


@struct.dataclass
class NNMarket:
    """The deep market of Theorem 3.1 (one network; ``vmap`` for a batch of them).

    Agents are stacked per layer: layer ``l``'s pool holds ``K_l`` agents whose
    programs act on ``S_l`` (0-based: layer 0 reads the input). Globally agents are
    numbered pool after pool, ``N = sum_l K_l``.

    In: a state component ``s_0 f[..., m_0]``; out: ``s_n f[..., m_n]``.
    """

    kernels: tuple[jax.Array, ...]  # per layer l: f32[K_l, m_l, m_{l+1}] programs W_a
    biases: tuple[jax.Array, ...]  # per layer l: f32[K_l, m_{l+1}] programs b_a
    bids: jax.Array  # f32[N] constant bid parts β_a (offered in the agent's domain)
    wealth: jax.Array  # f32[N] w[α]; bids are capped by it, zero wealth cannot bid
    domain: jax.Array  # i32[N] layer whose state the agent's program transforms
    activation: str = struct.field(pytree_node=False, default="relu")
    auction: str = struct.field(pytree_node=False, default="first_price")

    @property
    def pool_sizes(self) -> tuple[int, ...]:
        """``K_l`` for each layer (static)."""
        return tuple(int(k.shape[-3]) for k in self.kernels)

    @property
    def widths(self) -> tuple[int, ...]:
        """``(m_0, ..., m_n)`` (static)."""
        return (
            int(self.kernels[0].shape[-2]),
            *(int(k.shape[-1]) for k in self.kernels),
        )


class MarketTrace(NamedTuple):
    """What one forward pass of the market did."""

    states: tuple[jax.Array, ...]  # components s_0..s_n, each f32[..., m_l]
    owners: jax.Array  # i32[n] global index of each step's owner (-1: nobody bid)
    prices: jax.Array  # f32[n] what each step's owner pays under the auction rule


def _check_auction(auction: str) -> str:
    if auction not in AUCTIONS:
        raise ValueError(
            f"unknown auction {auction!r}; expected one of {', '.join(AUCTIONS)}"
        )
    return auction


def from_mlp(
    params, *, activation: str = "relu", auction: str = "first_price"
) -> NNMarket:
    """Builds the deep market of Theorem 3.1 whose forward pass is the given MLP.

    One agent per layer, holding that layer's parameters, with wealth 1 and bid 1;
    every other constant map (agent) has zero wealth and is not stored (add some
    with :func:`enter`).

    Args:
      params: a list of ``(W f[in, out], b f[out])`` pairs (``y = x @ W + b``) or a
        flax Dense parameter dict (``{"params": {"Dense_0": {...}}}`` or
        ``{"Dense_0": {...}}``).
      activation: hidden layers' activation (one of ``mlp.ACTIVATIONS``; the proof
        uses ReLU); the last layer is linear.
      auction: ``"first_price"`` or ``"second_price"``.

    Returns:
      The market.

    Raises:
      ValueError: mismatched layer shapes, non-finite weights, an unknown
        activation or auction; the message names the layer and the problem.
    """
    mlp.check_activation(activation)
    _check_auction(auction)
    layers = mlp.as_layers(params)
    n = len(layers)
    return NNMarket(
        kernels=tuple(w[None] for w, _ in layers),
        biases=tuple(b[None] for _, b in layers),
        bids=jnp.ones((n,), jnp.float32),
        wealth=jnp.ones((n,), jnp.float32),
        domain=jnp.arange(n, dtype=jnp.int32),
        activation=activation,
        auction=auction,
    )


def enter(
    market: NNMarket,
    layer: int,
    kernels: jax.Array,
    biases: jax.Array,
    *,
    wealth: jax.Array | float = 0.0,
    bids: jax.Array | float = 0.0,
) -> NNMarket:
    """Adds ``E`` agents to layer ``layer``'s pool (appended after its agents).

    Args:
      market: the market.
      layer: 0-based layer whose state the newcomers' programs transform.
      kernels: f32[E, m_l, m_{l+1}] their programs' kernels.
      biases: f32[E, m_{l+1}] their programs' biases.
      wealth: f32[E] (or a scalar) their endowments.
      bids: f32[E] (or a scalar) their constant bids.

    Returns:
      A market with ``N + E`` agents (global indices of later pools shift by E).
    """
    if not 0 <= layer < len(market.kernels):
        raise ValueError(f"layer {layer} out of range [0, {len(market.kernels)})")
    kernels = jnp.asarray(kernels, jnp.float32)
    biases = jnp.asarray(biases, jnp.float32)
    want = market.kernels[layer].shape[1:]
    if kernels.ndim != 3 or kernels.shape[1:] != want:
        raise ValueError(f"layer {layer}: kernels must be [E, {want[0]}, {want[1]}]")
    e = kernels.shape[0]
    if biases.shape != (e, want[1]):
        raise ValueError(f"layer {layer}: biases must be [{e}, {want[1]}]")
    at = sum(market.pool_sizes[: layer + 1])
    new = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), (e,))

    def insert(arr, extra):
        return jnp.concatenate([arr[:at], extra, arr[at:]])

    return market.replace(
        kernels=tuple(
            jnp.concatenate([k, kernels]) if i == layer else k
            for i, k in enumerate(market.kernels)
        ),
        biases=tuple(
            jnp.concatenate([b, biases]) if i == layer else b
            for i, b in enumerate(market.biases)
        ),
        bids=insert(market.bids, new(bids)),
        wealth=insert(market.wealth, new(wealth)),
        domain=insert(market.domain, jnp.full((e,), layer, jnp.int32)),
    )


def clear(market: NNMarket, step: int) -> auctions.AuctionResult:
    """Algorithm 1's auction at ``step``: who owns the right to transform ``S_step``.

    Each agent bids ``min(β_a, w_a)`` if ``step`` is its domain; only agents with
    positive wealth and a matching domain are valid bidders.

    Returns:
      ``AuctionResult(winner i32[], price f32[])``, winner a global agent index.
    """
    offered = market.domain == step
    bids = jnp.where(offered, jnp.minimum(market.bids, market.wealth), 0.0)
    valid = offered & (market.wealth > 0)
    return AUCTIONS[market.auction](bids, valid)


def clear_all(market: NNMarket) -> auctions.AuctionResult:
    """Every step's auction at once: ``AuctionResult(winner i32[n], price f32[n])``.

    The bids are constant maps, so the auction for ``S_step`` depends only on which
    component the state is in, never on its values: all ``n`` auctions can be
    cleared in one vectorised call (the same outcome as :func:`clear` per step).
    """
    steps = jnp.arange(len(market.kernels), dtype=jnp.int32)
    n, agents = steps.shape[0], market.domain.shape[0]
    offered = jnp.broadcast_to(market.domain[None, :], (n, agents)) == jnp.broadcast_to(
        steps[:, None], (n, agents)
    )
    capped = jnp.broadcast_to(
        jnp.minimum(market.bids, market.wealth)[None, :], (n, agents)
    )
    rich = jnp.broadcast_to((market.wealth > 0)[None, :], (n, agents))
    return AUCTIONS[market.auction](jnp.where(offered, capped, 0.0), offered & rich)


def act(market: NNMarket, step: int, owner: jax.Array, s: jax.Array) -> jax.Array:
    """The owner's program at ``step``: ``σ(s @ W + b)`` (linear at the last step).

    Args:
      market: the market.
      step: 0-based layer index (static).
      owner: i32[] global index of the owner (-1: nobody; the result is NaN, the
        market produced nothing).
      s: f32[..., m_step] the state component the owner bought.

    Returns:
      f32[..., m_{step+1}] the next state component.
    """
    offset = sum(market.pool_sizes[:step])
    if market.pool_sizes[step] == 1:
        w, b = market.kernels[step][0], market.biases[step][0]
    else:
        local = jnp.clip(owner - offset, 0, market.pool_sizes[step] - 1)
        w, b = market.kernels[step][local], market.biases[step][local]
    # nobody owns the step: the market produces nothing (NaN), folded into the bias
    # so that the owner's program stays one fused matmul + bias + activation
    b = jnp.where(owner >= 0, b, jnp.nan)
    a = mlp.add_bias(s @ w, b)
    last = step == len(market.kernels) - 1
    return a if last else mlp.ACTIVATIONS[market.activation][0](a)


def run(market: NNMarket, x: jax.Array) -> MarketTrace:
    """One forward pass of the market: at each step bid, auction, transform.

    Args:
      market: the market (one network).
      x: f32[..., m_0] the input component, batched over any leading axes.

    Returns:
      A :class:`MarketTrace` with every state component and each step's owner.
    """
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 1 or x.shape[-1] != market.widths[0]:
        raise ValueError(
            f"x has shape {x.shape}; its last axis must be the input width "
            f"{market.widths[0]}"
        )
    result = clear_all(market)  # each step's auction (constant bids: all at once)
    states = [x]
    for step in range(len(market.kernels)):
        states.append(act(market, step, result.winner[step], states[-1]))
    return MarketTrace(tuple(states), result.winner, result.price)


def forward(market: NNMarket, x: jax.Array) -> jax.Array:
    """The market's forward pass ``f32[..., m_0] -> f32[..., m_n]`` (equals the MLP).

    Runs the auctions and ownership of Theorem 3.1's deep market (see :func:`run`);
    jit it, vmap it over inputs or over a batch of markets.
    """
    return run(market, x).states[-1]
