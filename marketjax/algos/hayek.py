"""Baum's Hayek machine on Blocks World (``algo: hayek``): a deep market of rules.

Baum (1999), "Toward a model of intelligence as an economy of agents"; Baum &
Durdanovic (2000), "Evolution of cooperative problem solving in an artificial
economy". Nothing new is trained here: the ``hayek:`` section is the ``deep:``
section (:class:`~marketjax.algos.deep.DeepConfig`) and the trainer is the deep
market's, run with

- agents of the ``rules`` family (``agents/families.py``: "if these features hold,
  make this move, bidding b"; a rule whose condition fails does not bid);
- the world (the right to act) auctioned each step, the winner paying its bid to
  the previous owner (``auction: bucket_brigade`` with γ = 1) and collecting the
  reward; rent on every living agent (``rent_on: all``);
- ``learning: selection`` with ``entry_funding: parent``: the bankrupt leave, the
  richest's mutated children fill their slots, paid for by the parent, who earns
  ``parent_share`` of their profits. The market's books count every unit of money.

What this module adds is the measurement Baum reports, :func:`solved_by_size`:
after training, each seed's economy plays fresh random instances of each size n
greedily (the highest bid among living solvent agents wins; no money moves), on a
world resized to the largest n (the rules read features, not stacks), and
``summary.json`` receives ``solved_fraction_by_size`` {n: median over seeds}.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from marketjax.agents.families import FAMILIES, make_family, population_bids
from marketjax.agents.population import ENTRY_PARENTS
from marketjax.algos import deep
from marketjax.core.config import ConfigError, field
from marketjax.core.schema import TrainConfig, Trainer
from marketjax.envs.blocks_world import FEATURES, MOVES, BlocksWorld
from marketjax.envs.gymnax_adapter import make_gymnax
from marketjax.mechanisms.auctions import rank_bids


@dataclasses.dataclass(frozen=True)
class HayekConfig(deep.DeepConfig):
    """The ``hayek:`` section: the deep market's keys plus the evaluation."""

    family: Literal[FAMILIES] = field("rules", doc="agent family (rules)")
    entry_parents: Literal[ENTRY_PARENTS] = field(
        "richest",
        doc="richest: clones of the richest; wealthy: each child's parent drawn "
        "among agents with wealth >= parent_threshold",
    )
    parent_threshold: float = field(
        0.0, lo=-1e30, hi=1e30, doc="least wealth of a parent (entry_parents: wealthy)"
    )
    owner_rent: float = field(
        0.0,
        lo=0.0,
        hi=1e30,
        doc="flat charge per step of holding the world, on top of rent (price on time)",
    )
    size_weight: float = field(
        0.0,
        lo=-1e3,
        hi=1e3,
        static=True,
        doc="a fresh rule's bid weight on log n (env BlocksWorld-r10-n): 1 starts "
        "bids proportional to n, as the reward 10n is",
    )
    cond_care: float = field(
        0.5,
        lo=0.0,
        hi=1.0,
        static=True,
        doc="P(a drawn rule condition cares about a feature); lower: more general",
    )
    eval_sizes: tuple[int, ...] = field(
        (2, 4, 8, 16, 32, 64, 100, 200),
        lo=1,
        hi=4096,
        doc="instance sizes n at which the trained economy is tested",
    )
    eval_episodes: int = field(
        100, lo=1, hi=100_000, doc="fresh instances per size and seed"
    )

    def family_options(self) -> dict:
        """The rules family's draws: weight on log n and condition specificity."""
        return {"rule_size_weight": self.size_weight, "rule_care_prob": self.cond_care}

    def entry_parent_rule(self) -> str:
        return self.entry_parents

    def validate(self, config: TrainConfig) -> None:
        env, _ = make_gymnax(config.env)
        if not isinstance(env, BlocksWorld):
            raise ConfigError(
                f"'env': the hayek machine runs on BlocksWorld, got {config.env}"
            )
        if self.family != "rules":
            raise ConfigError(f"'hayek.family' must be rules, got {self.family}")
        if self.size_weight and not env.size_feature:
            raise ConfigError(
                f"'hayek.size_weight' weighs log n, which {config.env} does not "
                "observe; use env BlocksWorld-r10-n"
            )
        self.check_common(config, "hayek")


CONFIG_CLASS = HayekConfig


def make_trainer(config: TrainConfig) -> Trainer:
    """The deep market's trainer (``algos/deep.py``) on the hayek section."""
    return deep.make_trainer(config)


def solve_instances(
    key: jax.Array,
    env: BlocksWorld,
    family,
    population,
    n: int,
    episodes: int,
    budget_share: float | None = None,
) -> jax.Array:
    """bool[episodes]: fresh instances of n blocks solved within ``step_factor · n``.

    Each step the market's auction without exploration: every bid is held to the
    bidder's budget share (``budget_share · max(wealth, 0)``, the deep market's
    cap with B training episodes: 1/B; None: no cap), the highest bid among living
    agents with positive wealth wins (ties to the lowest slot) and its rule's move
    is made; where nobody bids, a uniformly random move. Money is frozen.
    """
    k_reset, k_run = jax.random.split(key)
    _, state = jax.vmap(env.reset_sized, in_axes=(0, None))(
        jax.random.split(k_reset, episodes), n
    )
    ok = population.alive & (population.wealth > 0.0)

    def body(carry, k):
        state, done = carry
        obs = jax.vmap(env.get_obs)(state)
        bids = population_bids(family, population.params, obs)  # f32[E, N]
        if budget_share is not None:
            cap = budget_share * jnp.maximum(population.wealth, 0.0)
            bids = jnp.minimum(bids, cap[None, :])
        ranking = rank_bids(bids, jnp.broadcast_to(ok[None, :], bids.shape))
        moves = population.params["action"]["move"][jnp.maximum(ranking.winner, 0)]
        random = jax.random.randint(k, (episodes,), 0, len(MOVES))
        action = jnp.where(ranking.winner >= 0, moves, random)
        _, new, _, solved, _ = jax.vmap(env.step_env, in_axes=(None, 0, 0, None))(
            k, state, action, env.default_params
        )
        state = jax.tree.map(
            lambda a, b: jnp.where(done.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
            state,
            new,
        )
        return (state, done | solved), None

    keys = jax.random.split(k_run, env.step_factor * n)
    (_, done), _ = jax.lax.scan(body, (state, jnp.zeros((episodes,), bool)), keys)
    return done


def solved_by_size(final_state, config: TrainConfig, key=None) -> dict:
    """Solved fractions per size for each seed of a trained run (leading seed axis).

    Returns ``{"solved_fraction_by_size": {n: median over seeds},
    "solved_fraction_by_size_per_seed": [{n: fraction}], "max_size_solved_90":
    the largest n with a median fraction >= 0.9 (0 if none)}``.
    """
    hc: HayekConfig = config.algo_config
    env, _ = make_gymnax(config.env)
    big = env.resized(max(max(hc.eval_sizes), env.max_blocks))
    family = make_family(hc.family, len(env.feature_names), len(MOVES))
    pops = final_state.market.population
    seeds = jax.tree.leaves(pops.wealth)[0].shape[0]
    key = jax.random.key(config.seed + 12345) if key is None else key
    per_seed = [{} for _ in range(seeds)]
    for n in hc.eval_sizes:
        run = jax.jit(
            lambda k, p, n=n: solve_instances(
                k, big, family, p, n, hc.eval_episodes, 1.0 / config.num_envs
            )
        )
        for s in range(seeds):
            pop = jax.tree.map(lambda x, s=s: x[s], pops)
            per_seed[s][n] = float(jnp.mean(run(jax.random.fold_in(key, n), pop)))
    median = {n: float(np.median([r[n] for r in per_seed])) for n in hc.eval_sizes}
    good = [n for n, f in median.items() if f >= 0.9]
    return {
        "solved_fraction_by_size": median,
        "solved_fraction_by_size_per_seed": per_seed,
        "max_size_solved_90": max(good) if good else 0,
    }


def describe_rules(population, top: int = 8, names=FEATURES) -> list[str]:
    """The ``top`` richest living rules of one seed as readable lines (``names``:
    the observation's features, the env's ``feature_names``)."""
    wealth = np.asarray(population.wealth)
    cond = np.asarray(population.params["action"]["cond"])
    move = np.asarray(population.params["action"]["move"])
    log_bid = np.asarray(population.params["bid"]["log_bid"])
    w = np.asarray(population.params["bid"]["w"])
    p = names.index("progress")
    lines = []
    for i in np.argsort(-wealth)[:top]:
        terms = [
            (name if c == 1 else f"not {name}")
            for name, c in zip(names, cond[i], strict=True)
            if c
        ]
        src, dst = MOVES[int(move[i])]
        size = f" x n^{w[i, -1]:.3g}" if names[-1] == "log_n" else ""
        lines.append(
            f"{' & '.join(terms) or 'always'} -> move {src}->{dst} "
            f"(bid {np.exp(log_bid[i]):.3g} x {np.exp(w[i, p]):.3g}^progress{size}, "
            f"wealth {wealth[i]:.3g})"
        )
    return lines


def report(final_state, config: TrainConfig, out_dir) -> dict:
    """The runner's hook: solved fractions into summary.json, ``solved.png``."""
    extra = solved_by_size(final_state, config)
    pop0 = jax.tree.map(lambda x: x[0], final_state.market.population)
    names = make_gymnax(config.env)[0].feature_names
    extra["richest_rules_seed0"] = describe_rules(jax.device_get(pop0), 8, names)
    plot_solved(extra, Path(out_dir) / "solved.png", config.name)
    return extra


def plot_solved(extra: dict, path, title: str = "") -> None:
    """``solved.png``: fraction of fresh instances solved against n (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for row in extra["solved_fraction_by_size_per_seed"]:
        ax.plot(list(row), list(row.values()), color="0.7", lw=1)
    med = extra["solved_fraction_by_size"]
    ax.plot(list(med), list(med.values()), "o-", color="C0", label="median over seeds")
    ax.axhline(0.9, ls=":", color="k", lw=1)
    ax.axvline(8, ls="--", color="C3", lw=1, label="competing methods (Baum)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("blocks n")
    ax.set_ylabel("solved within the step limit")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
