"""PPO's pure pieces against values computed by hand."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from marketjax.algos.ppo import losses as L


def test_gae_hand_computed_with_done_in_the_middle():
    gamma, lam = 0.9, 0.5
    rewards = jnp.array([1.0, 2.0, 3.0, 4.0])
    values = jnp.array([0.5, 1.0, 1.5, 2.0])
    dones = jnp.array([0.0, 1.0, 0.0, 0.0])  # episode ends with step 1
    last_value = jnp.array(3.0)
    adv, targets = L.gae(rewards, values, dones, last_value, gamma, lam)
    # deltas: r_t + gamma * (1 - d_t) * V_{t+1} - V_t
    d3 = 4.0 + 0.9 * 3.0 - 2.0  # 4.7
    d2 = 3.0 + 0.9 * 2.0 - 1.5  # 3.3
    d1 = 2.0 + 0.0 - 1.0  # 1.0 (terminal: no bootstrap)
    d0 = 1.0 + 0.9 * 1.0 - 0.5  # 1.4
    a3 = d3
    a2 = d2 + 0.45 * a3
    a1 = d1  # the trace is cut by the done
    a0 = d0 + 0.45 * a1
    expected = np.array([a0, a1, a2, a3])
    chex.assert_trees_all_close(adv, expected, rtol=1e-6)
    chex.assert_trees_all_close(targets, expected + np.asarray(values), rtol=1e-6)


def test_gae_batched_columns_are_independent():
    key = jax.random.key(0)
    r, v, d = jax.random.uniform(key, (3, 5, 2))
    d = (d > 0.7).astype(jnp.float32)
    last = jnp.array([0.3, -0.2])
    adv, _ = L.gae(r, v, d, last, 0.99, 0.95)
    for b in range(2):
        col, _ = L.gae(r[:, b], v[:, b], d[:, b], last[b], 0.99, 0.95)
        chex.assert_trees_all_close(adv[:, b], col, rtol=1e-6)


def test_clipped_objective_hand_computed():
    eps = 0.2
    ratios = np.array([1.5, 0.5, 1.1, 0.7])
    adv = np.array([1.0, 1.0, -2.0, -1.0])
    old = np.zeros(4, np.float32)
    loss, kl, clip_frac = L.clipped_policy_loss(
        jnp.log(jnp.asarray(ratios, jnp.float32)), old, jnp.asarray(adv), eps
    )
    # min(r A, clip(r) A): 1.2 (clipped above), 0.5 (unclipped is smaller),
    # -2.2 (inside range), -0.8 (clipped at 0.8 is smaller)
    expected = -np.mean([1.2, 0.5, -2.2, -0.8])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(clip_frac, 0.75, rtol=1e-6)
    np.testing.assert_allclose(kl, np.mean(ratios - 1 - np.log(ratios)), rtol=1e-5)


def test_value_loss_clipping():
    value = jnp.array([2.0, 0.0])
    old = jnp.array([1.0, 0.0])
    target = jnp.array([3.0, 1.0])
    # sample 0: unclipped err 1, clipped value 1.2 -> err 3.24; sample 1: err 1
    np.testing.assert_allclose(L.value_loss(value, old, target, 0.2), 0.5 * 2.12)
    np.testing.assert_allclose(L.value_loss(value, old, target, None), 0.5 * 1.0)


def test_categorical_and_normal_log_probs():
    logits = jnp.log(jnp.array([[0.2, 0.3, 0.5]]))
    lp = L.categorical_log_prob(logits, jnp.array([2]))
    np.testing.assert_allclose(lp, [math.log(0.5)], rtol=1e-6)
    ent = L.categorical_entropy(logits)
    p = np.array([0.2, 0.3, 0.5])
    np.testing.assert_allclose(ent, [-(p * np.log(p)).sum()], rtol=1e-6)

    mean = jnp.array([[0.0, 1.0]])
    log_std = jnp.log(jnp.array([[1.0, 2.0]]))
    a = jnp.array([[0.5, -1.0]])
    want = sum(
        -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
        for x, m, s in [(0.5, 0.0, 1.0), (-1.0, 1.0, 2.0)]
    )
    np.testing.assert_allclose(L.normal_log_prob(mean, log_std, a), [want], rtol=1e-6)
    want_ent = sum(0.5 * math.log(2 * math.pi * math.e * s**2) for s in (1.0, 2.0))
    np.testing.assert_allclose(L.normal_entropy(log_std), [want_ent], rtol=1e-6)


def test_ppo_loss_combines_pieces():
    m = 6
    key_a, key_b = jax.random.split(jax.random.key(1))
    lp = jax.random.normal(key_a, (m,)) * 0.1
    adv = jax.random.normal(key_b, (m,))
    ent = jnp.full((m,), 0.7)
    value = jnp.linspace(0.0, 1.0, m)
    total, parts = L.ppo_loss(
        lp,
        ent,
        value,
        jnp.zeros(m),
        value,
        adv,
        value + 1.0,
        clip_eps=0.2,
        vf_coef=0.5,
        ent_coef=0.01,
        normalize_advantages=False,
    )
    want = parts.policy_loss + 0.5 * parts.value_loss - 0.01 * 0.7
    np.testing.assert_allclose(total, want, rtol=1e-6)
    np.testing.assert_allclose(parts.value_loss, 0.5, rtol=1e-6)


def test_bootstrap_truncated_adds_gamma_v_only_at_cut_steps():
    rewards = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # [T=3, B=2]
    cut = jnp.zeros((3, 2)).at[1, 0].set(1.0)
    values = jnp.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]])
    out = L.bootstrap_truncated(rewards, cut, lambda: values, 0.5)
    # only step 1 of episode 0 was cut: 3 + 0.5 * 30 = 18
    np.testing.assert_array_equal(out, [[1.0, 2.0], [18.0, 4.0], [5.0, 6.0]])


def test_bootstrap_truncated_skips_the_critic_without_cuts():
    rewards = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    nan_values = lambda: jnp.full((2, 2), jnp.nan)
    # No cut step: the critic is not evaluated (NaN * 0 would poison the sum).
    skip = jax.jit(lambda r, c: L.bootstrap_truncated(r, c, nan_values, 0.9))
    out = skip(rewards, jnp.zeros((2, 2)))
    np.testing.assert_array_equal(out, rewards)
    # Under vmap over seeds (cond -> select) the same numbers come out.
    batched = jax.vmap(lambda r, c: L.bootstrap_truncated(r, c, nan_values, 0.9))(
        jnp.stack([rewards, rewards]), jnp.zeros((2, 2, 2))
    )
    np.testing.assert_array_equal(batched, jnp.stack([rewards, rewards]))
