"""Agent families 𝒜 of Definition 2.1: an action part α̂ and a bid part α_b.

Each family is written for ONE agent and lifted to a population with ``vmap``
(STYLE.md point 4). A family is a small record of pure functions:

- ``init(key) -> params``: one agent's parameters (a pytree);
- ``bid(params, obs f32[D]) -> f32[]``: the raw bid α_b(ω), before the wealth cap;
- ``act(key, params, obs f32[D]) -> i32[]``: the action α̂(ω);
- ``mutate(key, params, scale) -> params``: a perturbed clone (Baum's Hayek machine).

Families: ``linear`` (constant action, linear bid), ``mlp`` (constant action, MLP bid
with optional LayerNorm), ``policy`` (MLP action, MLP bid), ``linear_policy`` (a
small deterministic program, the action ``argmax(obs @ W + b)``, with a linear bid:
Baum's Hayek agents, whose bid is part of the mutated program under selection, or
learned under Q(λ)), ``rules`` (a condition → action rule over 0/1 features with a
bid, Baum's Hayek2/3 agents: :func:`rule_matches`; it abstains, bidding −inf, where
its condition fails),
``qnet`` (a program that reads its own action values: one MLP with an output
per action, Q_i(obs, ·); it acts ``argmax_a Q_i`` and bids ``max_a Q_i``, so
whoever wins the right acts by its own values, and Q(λ) regresses the output of
the action taken; "the richest wins" then means "the richest program acts"),
``conv`` (constant action, a bid that reads an image
observation: one 3 x 3 convolution of 16 channels, ReLU, then the MLP; the
network of MinAtar's DQN baseline, Young & Tian 2019, Sec. 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

FAMILIES = ("linear", "mlp", "policy", "linear_policy", "rules", "conv", "qnet")
CONSTANT_ACTION = ("linear", "mlp", "conv")  # families whose α̂ ignores the obs
CONV_FEATURES = 16  # channels of the conv family's 3 x 3 layer (MinAtar's DQN net)
NORMS = ("layer", "rms")  # the normalisation after each hidden Dense
LINEAR_BIDS = ("linear", "linear_policy")  # families whose bid is obs @ w + c
_UNROLL_MAX_DIM = 16  # linear bids on observations up to this size are unrolled


class AgentFamily(NamedTuple):
    """The pure functions of one agent family (see module docstring)."""

    name: str
    init: Callable[[jax.Array], Any]
    bid: Callable[[Any, jax.Array], jax.Array]
    act: Callable[[jax.Array, Any, jax.Array], jax.Array]
    mutate: Callable[[jax.Array, Any, jax.Array], Any]
    constant_action: bool  # True if α̂ ignores the observation
    num_actions: int  # size of the discrete action space
    # (params, obs f32[D]) -> f32[A], a program's value per action (qnet), or None
    values: Callable[[Any, jax.Array], jax.Array] | None = None


class MLP(nn.Module):
    """A ReLU MLP with optional normalisation; ``out`` outputs (squeezed if 1).

    ``norm`` picks the normalisation after each hidden Dense when ``layer_norm``
    is set: ``"layer"`` is LayerNorm (Ba et al. 2016: centre, scale by the
    standard deviation, learned scale and bias); ``"rms"`` is RMSNorm (Zhang &
    Sennrich 2019: scale by the root mean square, learned scale only), which skips
    the mean and the bias and their gradients.
    """

    hidden: Sequence[int]
    out: int
    layer_norm: bool = True
    norm: str = "layer"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x) if self.norm == "layer" else nn.RMSNorm()(x)
            x = nn.relu(x)
        x = nn.Dense(self.out)(x)
        return x[..., 0] if self.out == 1 else x


class ConvMLP(nn.Module):
    """A 3 x 3 convolution (ReLU) over an image observation, then :class:`MLP`.

    Input: f32[D] or f32[B, D], the flattened ``shape`` = (H, W, C) image.
    """

    shape: tuple[int, int, int]
    hidden: Sequence[int]
    out: int
    layer_norm: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        lead = x.shape[:-1]
        image = x.reshape((-1, *self.shape))  # f32[B, H, W, C]
        h = nn.relu(nn.Conv(CONV_FEATURES, (3, 3), padding="SAME")(image))
        h = h.reshape((*lead, -1))  # f32[..., H * W * 16]
        return MLP(self.hidden, self.out, self.layer_norm)(h)


def perturb_floats(key: jax.Array, tree: Any, scale: jax.Array) -> Any:
    """Adds N(0, scale²) noise to every floating-point leaf of ``tree``."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    out = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
        else leaf
        for k, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


def make_family(
    name: str,
    obs_dim: int,
    num_actions: int,
    hidden: Sequence[int] = (64, 64),
    layer_norm: bool = True,
    bid_init_scale: float = 0.1,
    action_flip_prob: float = 0.2,
    obs_shape: Sequence[int] | None = None,
    bid_init: float = 1.0,
    bid_spread: float = 0.0,
    norm: str = "layer",
    rule_size_weight: float = 0.0,
    rule_care_prob: float = 0.5,
) -> AgentFamily:
    """Builds an agent family for observations f32[obs_dim] and discrete actions.

    Args:
      name: one of :data:`FAMILIES`.
      obs_dim: length of the flattened observation.
      num_actions: number of discrete actions.
      hidden: hidden widths of MLP parts.
      layer_norm: LayerNorm after each hidden Dense (stabilises on-policy bid
        learning without a replay buffer, as in PQN, Gallici et al. 2024).
      bid_init_scale: standard deviation of the initial linear bid weights.
      action_flip_prob: probability that a mutated clone of a constant-action agent
        draws a new action.
      obs_shape: the unflattened observation shape; ``conv`` needs (H, W, C).
      bid_init: initial constant ``c`` of a linear bid ``obs @ w + c``.
      bid_spread: standard deviation of ``c`` around ``bid_init`` across agents (0:
        every agent starts at ``bid_init``).
      norm: one of :data:`NORMS`, the normalisation when ``layer_norm`` is set
        (``"rms"``: RMSNorm, cheaper to differentiate; see :class:`MLP`).
      rule_size_weight: ``rules`` only: a fresh rule's bid weight on the LAST
        feature (Blocks World's log n with ``size_feature``: 1 starts every bid
        proportional to n, as the reward 10n is); 0, the default, starts all
        weights at 0.
      rule_care_prob: ``rules`` only: the probability that a drawn condition
        cares about a feature (then true or false equally; default 1/2).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown agent family {name!r}; expected one of {FAMILIES}")
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    if name == "rules":
        return rule_family(
            obs_dim, num_actions, action_flip_prob, rule_size_weight, rule_care_prob
        )
    if name == "conv":
        if obs_shape is None or len(obs_shape) != 3:
            raise ValueError(
                f"the conv family needs image observations (H, W, C); got shape "
                f"{None if obs_shape is None else tuple(obs_shape)}"
            )
        bid_net = ConvMLP(
            tuple(int(d) for d in obs_shape), tuple(hidden), 1, layer_norm
        )
    else:
        out = num_actions if name == "qnet" else 1
        bid_net = MLP(tuple(hidden), out, layer_norm, norm)
    act_net = MLP(tuple(hidden), num_actions, layer_norm, norm)
    dummy = jnp.zeros((obs_dim,), jnp.float32)

    def init(key):
        k_action, k_bid, k_act = jax.random.split(key, 3)
        if name in LINEAR_BIDS:
            bid = {
                "w": bid_init_scale * jax.random.normal(k_bid, (obs_dim,)),
                "c": jnp.float32(bid_init)
                + (
                    bid_spread * jax.random.normal(jax.random.fold_in(k_bid, 1), ())
                    if bid_spread > 0.0
                    else 0.0
                ),
            }
        else:
            bid = bid_net.init(k_bid, dummy)
        if name == "policy":
            action = act_net.init(k_act, dummy)
        elif name == "linear_policy":
            k_w, k_b = jax.random.split(k_act)
            action = {
                "w": jax.random.normal(k_w, (obs_dim, num_actions)),  # f32[D, A]
                "b": 0.1 * jax.random.normal(k_b, (num_actions,)),  # f32[A]
            }
        elif name == "qnet":  # the action part is the bid net's argmax
            action = jnp.zeros((), jnp.int32)
        else:
            action = jax.random.randint(k_action, (), 0, num_actions)
        return {"action": action, "bid": bid}

    def values(params, obs):
        return bid_net.apply(params["bid"], obs)  # f32[A]

    def bid(params, obs):
        if name in LINEAR_BIDS:
            return obs @ params["bid"]["w"] + params["bid"]["c"]
        if name == "qnet":
            return jnp.max(values(params, obs))
        return bid_net.apply(params["bid"], obs)

    def act(key, params, obs):
        if name == "qnet":
            return jnp.argmax(values(params, obs)).astype(jnp.int32)
        if name == "policy":
            logits = act_net.apply(params["action"], obs)
            return jax.random.categorical(key, logits).astype(jnp.int32)
        if name == "linear_policy":
            logits = obs @ params["action"]["w"] + params["action"]["b"]
            return jnp.argmax(logits).astype(jnp.int32)
        return params["action"].astype(jnp.int32)

    def mutate(key, params, scale):
        k_bid, k_act, k_flip, k_new = jax.random.split(key, 4)
        new_bid = perturb_floats(k_bid, params["bid"], scale)
        if name in ("policy", "linear_policy", "qnet"):
            new_action = perturb_floats(k_act, params["action"], scale)
        else:
            flip = jax.random.bernoulli(k_flip, action_flip_prob)
            fresh = jax.random.randint(k_new, (), 0, num_actions)
            new_action = jnp.where(flip, fresh, params["action"])
        return {"action": new_action, "bid": new_bid}

    constant = name in CONSTANT_ACTION
    q = values if name == "qnet" else None
    return AgentFamily(name, init, bid, act, mutate, constant, num_actions, q)


# A rule's condition on each feature: ignore it, require it true, require it false.
DONT_CARE, REQUIRE_TRUE, REQUIRE_FALSE = 0, 1, 2


def rule_matches(cond: jax.Array, obs: jax.Array) -> jax.Array:
    """bool[]: every feature satisfies its condition (obs f32[D] of 0/1 features,
    cond i32[D] of ``DONT_CARE | REQUIRE_TRUE | REQUIRE_FALSE``)."""
    on = obs > 0.5
    ok = (
        (cond == DONT_CARE)
        | ((cond == REQUIRE_TRUE) & on)
        | ((cond == REQUIRE_FALSE) & ~on)
    )
    return jnp.all(ok)


def rule_family(
    obs_dim: int,
    num_actions: int,
    action_flip_prob: float = 0.2,
    size_weight: float = 0.0,
    care_prob: float = 0.5,
) -> AgentFamily:
    """Baum's Hayek agents: "if condition then action, bidding b" (Baum 1999).

    One agent's parameters: ``{"action": {"cond": i32[D], "move": i32[]},
    "bid": {"log_bid": f32[], "w": f32[D]}}``. The bid is ``exp(log_bid + obs·w)``
    where the condition holds and −inf (no bid: the auction ignores it) elsewhere:
    a constant bid at w = 0 (a fresh rule), rising or falling with numeric
    features once mutation moves w. A fresh rule cares about each feature with
    probability 1/2 (then true or false equally) and bids around 1. A mutated
    clone redraws each condition with probability 1/D, its action with
    probability ``action_flip_prob``, and adds N(0, scale²) to log_bid and to each
    weight. ``size_weight``: a fresh rule's weight on the last feature (a size,
    such as Blocks World's log n: its bid then starts ∝ n^size_weight).
    ``care_prob``: the probability that a drawn condition (fresh, or redrawn by
    mutation) cares about a feature; below 1/2 fresh rules are more general (a
    rule of the reference program cares about 1–4 of the 9 features).
    """
    w0 = jnp.zeros((obs_dim,), jnp.float32)
    if size_weight:
        w0 = w0.at[-1].set(size_weight)

    def draw_cond(key, shape):
        u = jax.random.uniform(key, shape)
        ignore, true = 1.0 - care_prob, 1.0 - 0.5 * care_prob  # 0.5, 0.75 default
        return jnp.where(
            u < ignore, DONT_CARE, jnp.where(u < true, REQUIRE_TRUE, REQUIRE_FALSE)
        ).astype(jnp.int32)

    def init(key):
        k_cond, k_move, k_bid = jax.random.split(key, 3)
        return {
            "action": {
                "cond": draw_cond(k_cond, (obs_dim,)),  # i32[D]
                "move": jax.random.randint(k_move, (), 0, num_actions),  # i32[]
            },
            "bid": {
                "log_bid": 0.5 * jax.random.normal(k_bid, ()),  # f32[]
                "w": w0,  # f32[D]
            },
        }

    def bid(params, obs):
        match = rule_matches(params["action"]["cond"], obs)
        log_bid = params["bid"]["log_bid"] + obs @ params["bid"]["w"]
        return jnp.where(match, jnp.exp(log_bid), -jnp.inf)

    def act(key, params, obs):
        del key, obs
        return params["action"]["move"].astype(jnp.int32)

    def mutate(key, params, scale):
        k_which, k_cond, k_flip, k_move, k_bid = jax.random.split(key, 5)
        cond = params["action"]["cond"]
        redraw = jax.random.uniform(k_which, cond.shape) < 1.0 / obs_dim
        cond = jnp.where(redraw, draw_cond(k_cond, cond.shape), cond)
        flip = jax.random.bernoulli(k_flip, action_flip_prob)
        fresh = jax.random.randint(k_move, (), 0, num_actions)
        move = jnp.where(flip, fresh, params["action"]["move"])
        bid = perturb_floats(k_bid, params["bid"], scale)
        return {"action": {"cond": cond, "move": move}, "bid": bid}

    return AgentFamily("rules", init, bid, act, mutate, False, num_actions)


def rule_value(bid_params: Any, obs: jax.Array) -> jax.Array:
    """f32[]: a rule's bid where its condition holds, ``exp(log_bid + obs·w)``.

    What the ``bids`` learner (Q(λ), ``learners/q_lambda.py``) regresses for the
    ``rules`` family: it sees only the bid parameters (``{"log_bid", "w"}``), and
    a rule owns the world only where its condition held, so every sample it
    learns from is one where this is its bid.
    """
    return jnp.exp(bid_params["log_bid"] + obs @ bid_params["w"])


def population_bids(family: AgentFamily, params: Any, obs: jax.Array) -> jax.Array:
    """Raw bids of every agent on every episode's observation.

    Args:
      family: the agent family.
      params: stacked parameters, leaves [N, ...].
      obs: f32[B, D] observations.

    Returns:
      f32[B, N] raw bids (vmap over agents of vmap over episodes; for the linear
      family ``obs @ W.T + c``, unrolled into multiply-adds for small observations).
    """
    if family.name in LINEAR_BIDS:
        w, c = params["bid"]["w"], params["bid"]["c"]
        if obs.shape[-1] > _UNROLL_MAX_DIM:
            return obs @ w.T + c[None, :]
        # A few multiply-adds per bid, unrolled: XLA fuses them into the auction's
        # reductions, where a K=4 matmul would be a separate, slower kernel on CPU.
        bids = c[None, :]
        for k in range(obs.shape[-1]):
            bids = bids + obs[:, k : k + 1] * w[None, :, k]
        return bids
    per_agent = jax.vmap(jax.vmap(family.bid, in_axes=(None, 0)), in_axes=(0, None))
    return per_agent(params, obs).T


def winner_actions(
    key: jax.Array, family: AgentFamily, params: Any, winner: jax.Array, obs: jax.Array
) -> jax.Array:
    """The action of each episode's winner, i32[B] (winner -1 acts as agent 0;
    callers replace those actions)."""
    safe = jnp.maximum(winner, 0)
    if family.constant_action:
        return params["action"][safe].astype(jnp.int32)
    chosen = jax.tree.map(lambda leaf: leaf[safe], params)
    keys = jax.random.split(key, obs.shape[0])
    return jax.vmap(family.act)(keys, chosen, obs)
