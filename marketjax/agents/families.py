"""Agent families 𝒜 of Definition 2.1: an action part α̂ and a bid part α_b.

Each family is written for ONE agent and lifted to a population with ``vmap``
(STYLE.md point 4). A family is a small record of pure functions:

- ``init(key) -> params``: one agent's parameters (a pytree);
- ``bid(params, obs f32[D]) -> f32[]``: the raw bid α_b(ω), before the wealth cap;
- ``act(key, params, obs f32[D]) -> i32[]``: the action α̂(ω);
- ``mutate(key, params, scale) -> params``: a perturbed clone (Baum's Hayek machine);
- optionally ``init_shared(key)`` and ``features(shared, obs f32[..., D]) -> f32[...,
  H]``: one network every agent reads (``Population.shared``, the ``trunk``
  family), whose feature f32[H] ``bid`` and ``act`` then read in place of ``obs``.

Families: ``linear`` (constant action, linear bid), ``mlp`` (constant action, MLP bid
with optional LayerNorm), ``policy`` (MLP action, MLP bid), ``linear_policy`` (a
small deterministic program, the action ``argmax(obs @ W + b)``, with a linear bid:
Baum's Hayek agents, whose bid is part of the mutated program under selection, or
learned under Q(λ)), ``rules`` (a condition → action rule over 0/1 features with a
bid, Baum's Hayek2/3 agents, ``agents/rules.py``; it abstains, bidding −inf, where
its condition fails),
``qnet`` (a program that reads its own action values: one MLP with an output
per action, Q_i(obs, ·); it acts ``argmax_a Q_i`` and bids ``max_a Q_i``, so
whoever wins the right acts by its own values, and Q(λ) regresses the output of
the action taken; "the richest wins" then means "the richest program acts"),
``conv`` (constant action, a bid that reads an image
observation: one 3 x 3 convolution of 16 channels, ReLU, then the MLP; the
network of MinAtar's DQN baseline, Young & Tian 2019, Sec. 4),
``trunk`` (constant action, a linear bid head on features that every agent shares:
one MLP trunk reads each observation once for the whole population, so acting
costs one network plus N dot products, not N networks; see :func:`trunk_family`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from marketjax.agents.base import AgentFamily
from marketjax.agents.networks import (  # noqa: F401  (re-exported, as before)
    CONV_FEATURES,
    MLP,
    NORMS,
    ConvMLP,
    Trunk,
    perturb_floats,
)
from marketjax.agents.rules import (  # noqa: F401  (re-exported, as before)
    DONT_CARE,
    REQUIRE_FALSE,
    REQUIRE_TRUE,
    rule_family,
    rule_matches,
    rule_value,
)

FAMILIES = (
    "linear",
    "mlp",
    "policy",
    "linear_policy",
    "rules",
    "conv",
    "qnet",
    "trunk",
)
CONSTANT_ACTION = ("linear", "mlp", "conv", "trunk")  # families whose α̂ ignores the obs
LINEAR_BIDS = ("linear", "linear_policy")  # families whose bid is obs @ w + c
SHARED_TRUNK = ("trunk",)  # families whose agents read one network (features)
_UNROLL_MAX_DIM = 16  # linear bids on observations up to this size are unrolled


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
    if name == "trunk":
        return trunk_family(
            obs_dim, num_actions, hidden, layer_norm, norm, action_flip_prob
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


def trunk_family(
    obs_dim: int,
    num_actions: int,
    hidden: Sequence[int] = (64, 64),
    layer_norm: bool = True,
    norm: str = "layer",
    action_flip_prob: float = 0.2,
) -> AgentFamily:
    """Agents that bid with their own linear head on a trunk they all share.

    The bid of agent i on observation ω is ``φ(ω) · w_i + c_i``, where φ is one
    :class:`~marketjax.agents.networks.Trunk` (the ``mlp`` family's hidden
    layers) held in ``Population.shared``, and each agent plays a constant action.
    Each agent is still its own program to the market (its head, its action, its
    wealth); what it shares is how it perceives the world, as the K heads of
    bootstrapped DQN share a torso (Osband et al. 2016). Acting reads each
    observation once, O(B·(trunk + N·H)) rather than the ``mlp`` family's
    O(B·N·trunk). Q(λ) learns the trunk from every owner's error
    (``learners/q_lambda.py``); entrants get a fresh or mutated head and the
    trunk as it is.

    One agent's parameters: ``{"action": i32[], "bid": {"w": f32[H], "c": f32[]}}``
    with H = ``hidden[-1]``; ``bid`` and ``act`` read the feature f32[H], not the
    observation (``features`` maps one to the other). Heads start LeCun-scaled,
    w ~ N(0, 1/H) (untruncated, where flax's Dense truncates), with zero bias.
    """
    if not hidden:
        raise ValueError("the trunk family needs at least one hidden layer")
    trunk = Trunk(tuple(hidden), layer_norm, norm)
    width = int(hidden[-1])

    def init_shared(key):
        return trunk.init(key, jnp.zeros((obs_dim,), jnp.float32))

    def features(shared, obs):
        return trunk.apply(shared, obs)  # f32[..., H]

    def init(key):
        k_action, k_w = jax.random.split(key)
        head = {
            "w": jax.random.normal(k_w, (width,)) / jnp.sqrt(width),  # f32[H]
            "c": jnp.zeros((), jnp.float32),  # f32[]
        }
        return {"action": jax.random.randint(k_action, (), 0, num_actions), "bid": head}

    def bid(params, feature):
        return feature @ params["bid"]["w"] + params["bid"]["c"]

    def act(key, params, feature):
        del key, feature
        return params["action"].astype(jnp.int32)

    def mutate(key, params, scale):
        k_bid, k_flip, k_new = jax.random.split(key, 3)
        flip = jax.random.bernoulli(k_flip, action_flip_prob)
        fresh = jax.random.randint(k_new, (), 0, num_actions)
        return {
            "action": jnp.where(flip, fresh, params["action"]),
            "bid": perturb_floats(k_bid, params["bid"], scale),
        }

    return AgentFamily(
        "trunk",
        init,
        bid,
        act,
        mutate,
        True,
        num_actions,
        init_shared=init_shared,
        features=features,
    )


def population_bids(
    family: AgentFamily, params: Any, obs: jax.Array, shared: Any = None
) -> jax.Array:
    """Raw bids of every agent on every episode's observation.

    Args:
      family: the agent family.
      params: stacked parameters, leaves [N, ...].
      obs: f32[B, D] observations.
      shared: the population's shared parameters (``Population.shared``; read by
        families with ``features``, the trunk).

    Returns:
      f32[B, N] raw bids (vmap over agents of vmap over episodes; for the linear
      family ``obs @ W.T + c``, unrolled into multiply-adds for small observations;
      for the trunk family ``φ(obs) @ W.T + c``, the trunk run once per episode).
    """
    if family.features is not None:
        if not jax.tree.leaves(shared):
            raise ValueError(
                f"the {family.name} family's bids read the population's shared "
                "parameters: pass population_bids(..., shared=population.shared)"
            )
        heads = params["bid"]
        return family.features(shared, obs) @ heads["w"].T + heads["c"][None, :]
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
