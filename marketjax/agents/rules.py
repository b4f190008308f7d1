"""Baum's Hayek agents: condition → action rules over 0/1 features, with a bid.

The ``rules`` family of ``agents/families.py`` (Baum 1999's Hayek2/3 agents): a
rule bids only where its condition holds (elsewhere −inf: it abstains), and its
bid can follow numeric features once mutation moves its weights.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from marketjax.agents.base import AgentFamily
from marketjax.agents.networks import perturb_floats

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
