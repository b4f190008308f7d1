"""Config keys every market algorithm shares (the ``deep:`` and ``wide:`` sections).

Each market's section subclasses :class:`MarketConfig`: the agents' networks, the
economy's discount, endowment and rent, CAPITALISM's entry and exit, and the Q(λ)
learning loop. Choices are derived from the runtime registries (``RULES``,
``FAMILIES``, ``RENT_RULES``, ``LEARNING_CHAINS``), so a rule added there is
reachable from configs.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from marketjax.agents.families import NORMS
from marketjax.agents.population import ENTRY_FUNDING
from marketjax.core.config import ConfigError, field
from marketjax.learners import (
    LEARNING_CHAINS,
    Learner,
    chain,
    linear_anneal,
    q_lambda,
    selection,
)
from marketjax.markets.ledger import RENT_RULES

Learning = Literal[tuple(LEARNING_CHAINS)]
RentRule = Literal[RENT_RULES]
EntryFunding = Literal[ENTRY_FUNDING]
Norm = Literal[NORMS]


@dataclasses.dataclass(frozen=True)
class MarketConfig:
    """Keys shared by market sections (see module docstring)."""

    hidden: tuple[int, ...] = field(
        (64, 64), lo=1, hi=65_536, doc="hidden widths of the MLPs"
    )
    layer_norm: bool = field(True, doc="LayerNorm after each hidden layer")
    norm: Norm = field(
        "layer", doc="layer: LayerNorm; rms: RMSNorm (cheaper), when layer_norm"
    )
    gamma: float = field(0.99, lo=0.0, hi=1.0, doc="sellers' share γ, the discount")
    initial_wealth: float = field(
        1e6, lo=0.0, lo_open=True, hi=1e30, doc="each agent's starting wealth"
    )
    rent: float = field(0.0, lo=0.0, hi=1e30, doc="ε of the rent rule, per step")
    rent_rule: RentRule = field(
        "proportional", doc="proportional: w <- (1-ε)w per held share; flat: ε each"
    )
    learning: Learning = field("bids", doc="bids | selection | both")
    allowance: float = field(10.0, lo=0.0, hi=1e30, doc="an entrant's endowment")
    exit_threshold: float = field(
        0.0, lo=-1e30, hi=1e30, doc="agents below this wealth leave"
    )
    entry_funding: EntryFunding = field(
        "mint",
        doc="mint: allowances are new money; parent: the cloned parent pays; "
        "earnings: the parent pays out of its profit since the last renewal, and "
        "clones it cannot afford are fresh draws (minted)",
    )
    parent_share: float = field(
        0.0, lo=0.0, hi=1.0, doc="share of a child's profit paid to its parent"
    )
    clone_prob: float = field(0.8, lo=0.0, hi=1.0, doc="P(entrant clones the richest)")
    mutation_scale: float = field(0.05, lo=0.0, hi=1e3, doc="std of clone mutation")
    min_age: int = field(
        1, lo=0, hi=10**9, doc="updates before an entrant can go bankrupt"
    )
    rollout_steps: int = field(16, lo=1, hi=100_000, doc="env steps per update")
    lr: float = field(1e-3, lo=0.0, lo_open=True, hi=10.0, doc="Adam learning rate")
    anneal_lr: bool = field(True, doc="anneal lr linearly to 0 over the run")
    max_grad_norm: float = field(
        10.0, lo=0.0, lo_open=True, hi=1e30, doc="gradient clipping (global norm)"
    )
    epochs: int = field(1, lo=1, hi=1000, doc="passes over each update's data")
    minibatches: int = field(
        1, lo=1, hi=1 << 20, doc="gradient steps per pass (shuffled)"
    )
    sample_capacity: float = field(
        2.0,
        lo=0.0,
        lo_open=True,
        hi=1e6,
        static=True,
        doc="samples an agent learns from per minibatch, in fair shares (M/N); "
        "family trunk: all it owned",
    )
    td_lambda: float = field(0.65, lo=0.0, hi=1.0, doc="λ of the Q(λ) targets")
    explore_start: float = field(1.0, lo=0.0, hi=1.0, doc="ε at the first update")
    explore_end: float = field(0.05, lo=0.0, hi=1.0, doc="ε after the anneal")
    explore_fraction: float = field(
        0.2, lo=0.0, hi=1.0, doc="share of the run over which ε anneals linearly"
    )

    def family_options(self) -> dict:
        """Options of the agent family that only some sections have (the hayek
        section's rule draws); none for the plain market sections."""
        return {}

    def entry_parent_rule(self) -> str:
        """Who parents an entrant (``agents/population.renew``): the richest,
        unless a section offers the choice (hayek's ``entry_parents``)."""
        return "richest"

    def check_common(self, config, section: str) -> None:
        """Cross-key checks: discrete actions, positive widths, divisible batches,
        a proportional rent of at most 1 (``section`` names the market's section)."""
        from marketjax.envs.gymnax_adapter import env_spec

        if not env_spec(config.env).discrete:
            raise ConfigError(
                f"'env': the {section} market needs discrete actions; "
                f"{config.env} has a Box action space"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(
                f"'{section}.hidden' widths must be >= 1, got {self.hidden}"
            )
        if self.rent_rule == "proportional" and self.rent > 1.0:
            raise ConfigError(
                f"'{section}.rent' must be <= 1 under the proportional rule "
                f"(w <- (1-ε)w), got {self.rent}"
            )
        samples = self.rollout_steps * config.num_envs
        if samples % self.minibatches:
            raise ConfigError(
                f"'{section}.minibatches' ({self.minibatches}) must divide "
                f"rollout_steps * num_envs ({samples})"
            )


def market_learner(
    section: MarketConfig, family, value_fn, get, put, num_updates: int
) -> Learner:
    """The chain of learners a market section's ``learning:`` names.

    Args:
      section: the market's config section.
      family: the agents' family (entrants for ``selection``).
      value_fn, get, put: what Q(λ) trains (see :func:`marketjax.learners.q_lambda`).
      num_updates: updates of the run (the learning-rate horizon).
    """
    factories = {
        "q_lambda": lambda: q_lambda(
            value_fn,
            get,
            put,
            num_updates=num_updates,
            epochs=section.epochs,
            minibatches=section.minibatches,
            capacity_factor=section.sample_capacity,
            anneal_lr=section.anneal_lr,
            features=family.features,
        ),
        "selection": lambda: selection(
            family,
            min_age=section.min_age,
            funding=section.entry_funding,
            parents=section.entry_parent_rule(),
        ),
    }
    return chain(*(factories[name]() for name in LEARNING_CHAINS[section.learning]))


def explore_rate(params: dict, num_updates: int, update_index):
    """ε of the exploration at an update, from the section's sweepable numbers."""
    return linear_anneal(
        params["explore_start"],
        params["explore_end"],
        params["explore_fraction"],
        num_updates,
        update_index,
    )
