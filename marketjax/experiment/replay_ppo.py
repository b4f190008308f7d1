"""Evaluation of a trained PPO run (``marketjax replay`` on ``algo: ppo``).

There is no market to watch: the first run's policy (point 0, seed 0) plays K fresh
episodes greedily (the argmax of the logits; for a Box action space the Gaussian
mean, clipped to the bounds as in training) in a jitted ``lax.scan`` of
``replay.BLOCK`` steps until every episode has ended once, and
``RUN_DIR/replay/summary.json`` gets the evaluation returns (mean and std over
episodes, and one per episode); for a discrete action space and an environment
``frames.py`` can draw, ``frames.png``/``frames.gif`` show episode 0 with the
policy's action in each frame's band.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.algos.ppo.trainer import make_network
from marketjax.envs.gymnax_adapter import BatchedEnv
from marketjax.experiment.checkpoint import write_json_atomic


def play_ppo(config, params, episodes: int, max_steps: int) -> dict:
    """Greedy episodes of a PPO policy; numpy ``reward`` f32[T, K], ``done``."""
    from marketjax.experiment.replay import BLOCK

    cfg = config.algo_config
    env = BatchedEnv(config.env, episodes, reset=config.env_reset)  # as trained
    spec = env.spec
    network = make_network(cfg, spec)

    def one(carry, key):
        env_state, obs = carry
        policy_out, _, _ = network.apply(params, obs)
        if spec.discrete:
            action = jnp.argmax(policy_out, axis=-1)
        else:
            action = jnp.clip(policy_out, spec.action_low, spec.action_high)
        seen = obs  # f32[K, D], what the policy acted on
        obs, env_state, reward, done, _ = env.step(key, env_state, action)
        record = {"obs": seen, "reward": reward, "done": done}  # f32[K], bool[K]
        if spec.discrete:
            record["action"] = action.astype(jnp.int32)  # i32[K]
        return (env_state, obs), record

    @jax.jit
    def block(key, carry):
        return jax.lax.scan(one, carry, jax.random.split(key, BLOCK))

    key, k_reset = jax.random.split(jax.random.key(config.seed))
    obs, env_state = env.reset(k_reset)
    carry, chunks = (env_state, obs), []
    ended, steps = np.zeros(episodes, bool), 0
    while not ended.all() and steps < max_steps:
        key, k = jax.random.split(key)
        carry, rec = block(k, carry)
        rec = jax.device_get(rec)
        chunks.append(rec)
        ended |= rec["done"].any(axis=0)
        steps += BLOCK
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def evaluate_ppo(run: Path, config, params, episodes: int, max_steps: int) -> dict:
    """Plays and writes ``run/replay/summary.json``; returns the summary."""
    from marketjax.experiment.replay import episode_ends

    rec = play_ppo(config, params, episodes, max_steps)
    ends = episode_ends(rec["done"])
    returns = [
        float(rec["reward"][: ends[e] + 1, e].astype(np.float64).sum())
        for e in range(episodes)
    ]
    summary = {
        "run": str(run),
        "algo": config.algo,
        "env": config.env,
        "episodes": episodes,
        "finished": int(rec["done"].any(axis=0).sum()),
        "explore": 0.0,
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": returns,
    }
    summary["frames"] = False
    if "action" in rec:  # discrete: frames of episode 0 with the policy's action
        from marketjax.experiment.replay_plots import draw_frames

        def label(t):
            return f"t={t} action {int(rec['action'][t, 0])}", (0.85, 0.85, 0.85)

        summary["frames"] = draw_frames(config, rec, ends, run / "replay", label)
    write_json_atomic(run / "replay" / "summary.json", summary)
    return summary
