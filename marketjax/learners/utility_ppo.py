"""``utility_ppo``: each primitive learns its bid policy by PPO on its own utility.

Chang et al. (2020, §5 and their ``PPO`` with ``memoryless = True``): a primitive's
return is its one-step utility u (the market's credit assignment, e.g.
r_t + γ·s_{t+1} − s_t under the credit-conserving Vickrey rule; losers get 0), never
bootstrapped, so the advantage is A = u − V(s) (normalised over the primitive's
batch) and the critic regresses V(s) on u. A primitive pools its K clones' samples
(their clones share one policy, critic and replay buffer). Per update, one shuffled
pass over the batch in minibatches of ``minibatch_size``; each minibatch takes one
critic step (MSE + ``critic_l2``·‖θ‖², Adam at ``critic_lr``) and then one policy step
(clipped surrogate at ``clip_eps`` − ``entropy_coef``·entropy, global-norm clip
``max_grad_norm``, Adam at ``policy_lr``). All N primitives update at once (``vmap``).

Sweepable numbers come from ``params`` (f32 leaves): ``clip_eps``, ``entropy_coef``,
``policy_lr``, ``critic_lr``, ``critic_l2``, ``max_grad_norm``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from marketjax.agents import beta_bidder
from marketjax.learners.base import Learner, no_change


class BidExperience(NamedTuple):
    """One update's auctions as bidders see them (clone c runs primitive c mod N)."""

    obs: jax.Array  # f32[T, B, D], the observation bid on
    bids: jax.Array  # f32[T, B, C], every clone's bid (C = K·N)
    utility: jax.Array  # f32[T, B, C], each clone's utility (0 unless it won)


class OptState(NamedTuple):
    policy: optax.OptState  # Adam moments, leaves [N, ...]
    critic: optax.OptState  # Adam moments, leaves [N, ...]


def per_primitive(exp: BidExperience, num_primitives: int):
    """``(obs f32[N, M, D], bids f32[N, M], utility f32[N, M])``, M = T·B·K."""
    t, b, c = exp.bids.shape
    k = c // num_primitives

    def split(x):  # [T, B, K·N] -> [N, T·B·K]
        x = x.reshape(t, b, k, num_primitives)
        return jnp.moveaxis(x, -1, 0).reshape(num_primitives, t * b * k)

    obs = jnp.broadcast_to(exp.obs[:, :, None], (t, b, k, exp.obs.shape[-1]))
    obs = jnp.broadcast_to(
        obs.reshape(t * b * k, -1), (num_primitives, t * b * k, obs.shape[-1])
    )
    return obs, split(exp.bids), split(exp.utility)


def ppo_losses(policy, critic, obs, bid, utility, old_logp, adv, params):
    """``(policy_loss, (surrogate, entropy, clipped_frac)), critic_loss``."""
    a, b = beta_bidder.beta_params(policy, obs)
    ratio = jnp.exp(beta_bidder.log_prob(a, b, bid) - old_logp)
    eps = params["clip_eps"]
    surr = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - eps, 1.0 + eps) * adv)
    ent = jnp.mean(beta_bidder.entropy(a, b))
    clipped = jnp.mean((jnp.abs(ratio - 1.0) > eps).astype(jnp.float32))
    policy_loss = -jnp.mean(surr) - params["entropy_coef"] * ent
    return policy_loss, (-jnp.mean(surr), ent, clipped)


def critic_loss(critic, obs, utility, l2):
    v = beta_bidder.value(critic, obs)
    sq = sum(jnp.sum(x**2) for x in jax.tree.leaves(critic))
    return jnp.mean((v - utility) ** 2) + l2 * sq


def utility_ppo(num_primitives: int, minibatch_size: int) -> Learner:
    """Builds the learner (see module docstring).

    Args:
      num_primitives: N; the experience has C = K·N clone columns.
      minibatch_size: samples per gradient step; must divide T·B·K.
    """
    adam = optax.scale_by_adam()

    def init(population):
        p = population.params
        return OptState(
            jax.vmap(adam.init)(p["policy"]), jax.vmap(adam.init)(p["critic"])
        )

    def one(key, prim, opt, obs, bid, utility, params):
        policy, critic = prim["policy"], prim["critic"]
        m = bid.shape[0]
        a, b = beta_bidder.beta_params(policy, obs)
        old_logp = beta_bidder.log_prob(a, b, bid)
        adv = utility - beta_bidder.value(critic, obs)
        adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8)
        perm = jax.random.permutation(key, m).reshape(m // minibatch_size, -1)

        def step(carry, idx):
            policy, critic, opt = carry
            o, x, u, lp, ad = obs[idx], bid[idx], utility[idx], old_logp[idx], adv[idx]
            vloss, g = jax.value_and_grad(critic_loss)(
                critic, o, u, params["critic_l2"]
            )
            upd, c_opt = adam.update(g, opt.critic)
            critic = optax.apply_updates(
                critic, jax.tree.map(lambda d: -params["critic_lr"] * d, upd)
            )
            (ploss, aux), g = jax.value_and_grad(ppo_losses, has_aux=True)(
                policy, critic, o, x, u, lp, ad, params
            )
            norm = optax.tree.norm(g)
            scale = jnp.minimum(1.0, params["max_grad_norm"] / (norm + 1e-12))
            g = jax.tree.map(lambda d: d * scale, g)
            upd, p_opt = adam.update(g, opt.policy)
            policy = optax.apply_updates(
                policy, jax.tree.map(lambda d: -params["policy_lr"] * d, upd)
            )
            return (policy, critic, OptState(p_opt, c_opt)), (vloss, ploss, *aux)

        with jax.numpy_dtype_promotion("standard"):  # optax mixes int counts
            (policy, critic, opt), logs = jax.lax.scan(
                step, (policy, critic, opt), perm
            )
        return {"policy": policy, "critic": critic}, opt, logs

    def update(key, state, population, experience, params):
        obs, bid, utility = per_primitive(experience, num_primitives)
        keys = jax.random.split(key, num_primitives)
        prims, opt, logs = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, None))(
            keys, population.params, state, obs, bid, utility, params
        )
        vloss, ploss, surr, ent, clipped = (jnp.mean(x) for x in logs)
        metrics = {
            "critic_loss": vloss,
            "policy_loss": ploss,
            "surrogate": surr,
            "bid_entropy": ent,
            "clipped_frac": clipped,
        }
        return no_change(population.replace(params=prims), opt, metrics)

    def reset(state, replaced, population):
        del replaced, population  # the society never replaces primitives
        return state

    return Learner(init, update, reset)
