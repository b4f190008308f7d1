"""The ledger every market keeps: accounts, transfers, rent and the books.

One module holds every rule of money that markets share (DESIGN.md, "one definition
of each rule"):

- **transfers**: a market step's payments are a list of ``(account, amount)`` pairs
  summed by one ``segment_sum`` over the N agents and the bank (account N):
  :func:`transfer`. O(B + N) for B episodes, no dense [B, N] matrix.
- **rent**: the paper's rent is proportional, w ← (1 − ε) w for an owner each step
  (seed 002, Algorithm 1's "optional rent ε"); with B episodes sharing one wealth
  (footnote 2), an agent pays ε·w times the fraction of the episodes it holds, so a
  sole owner of all B decays exactly as (1 − ε)^t. A flat rent (ε per holding per
  step: Holland's bucket-brigade tax) is kept for configs that name it:
  :func:`rent_due`. Rent is charged either on owners only (the paper) or on every
  living agent (``RENT_BASES``; Baum's "rent proportional to computation": each
  agent that runs pays, as if it held every slot, so an idle agent decays exactly
  as (1 − ε)^t): :func:`living_rent`.
- **the books**: every flow across the economy's boundary is counted once, and

      Σ wealth + bank = initial + rewards − rent + allowances.

  Counters and the bank account use Kahan (compensated) summation so that millions
  of float32 additions do not drift; :func:`books_imbalance` returns the relative
  error of the identity above, which tests check at scale and the runner checks in
  debug mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

RENT_RULES = ("proportional", "flat")
BUDGET_HEADROOM = 1e-4  # share of the budget kept back from bids (float32 rounding)
RENT_BASES = ("owners", "all")  # who pays rent: holders of rights, or every agent
BUDGET_RULES = ("share", "scale")  # how B episodes split one budget (below)


def transfer(accounts: jax.Array, amounts: jax.Array, num_agents: int) -> jax.Array:
    """Net change of every account from a list of payments.

    Args:
      accounts: i32[K] (or i32[R, B]: R payments in each of B episodes) account
        of each payment (0..N-1 agents, N the bank).
      amounts: f32, the shape of ``accounts``: signed amounts credited to them.
      num_agents: N.

    Returns:
      f32[N + 1] the agents' changes, then the bank's. One scatter-add in
      row-major order; with the B axis sharded over devices, XLA turns it into
      per-device partial sums and one all-reduce of N + 1 numbers.
    """
    if accounts.ndim == 1:
        return jax.ops.segment_sum(amounts, accounts, num_segments=num_agents + 1)
    zeros = jnp.zeros((num_agents + 1,), amounts.dtype)
    return zeros.at[accounts].add(amounts, mode="drop")


def limited_liability(wealth_after: jax.Array, resale_paid: jax.Array) -> jax.Array:
    """What the bank covers of what agents paid to hand their rights on (the one
    rule of limited liability).

    A right is resold at the next buyer's price; where that price is negative (a
    *bad*: every bidder expects to lose from holding it) the seller pays to be rid
    of it. Such a payment is set by the other agents' bids, so no budget of the
    seller's can bound it; the bank pays the part that would take the seller below
    zero. Negative rewards from the world are not covered.

    Args:
      wealth_after: f32[N] each agent's wealth after the step's settlement.
      resale_paid: f32[N] >= 0, what each agent paid this step to hand rights on.

    Returns:
      f32[N] >= 0, the bank's cover: add it to the agents, take it from the bank.
    """
    return jnp.minimum(resale_paid, jnp.maximum(-wealth_after, 0.0))


def rent_due(
    wealth: jax.Array,
    holdings: jax.Array,
    num_slots: int,
    rate: jax.Array,
    rule: str = "proportional",
) -> jax.Array:
    """Rent each agent pays this step (the one definition of rent).

    Args:
      wealth: f32[N] wealth before rent.
      holdings: f32[N] what each agent holds this step, summed over the B episodes
        (deep market: rights owned; wide market: units of goods held).
      num_slots: what there is to hold: B rights (deep), B·G units (wide).
      rate: ε >= 0 (proportional: ε <= 1).
      rule: ``"proportional"`` (ε·max(w, 0)·holdings/slots) or ``"flat"``
        (ε·holdings).

    Returns:
      f32[N] rent, never more than the agent's positive wealth under the
      proportional rule.
    """
    if rule not in RENT_RULES:
        raise ValueError(f"unknown rent rule {rule!r}; expected one of {RENT_RULES}")
    if rule == "flat":
        return rate * holdings
    return rate * jnp.maximum(wealth, 0.0) * holdings / num_slots


def bid_budget(
    wealth: jax.Array, rate: jax.Array, rule: str, num_slots: int
) -> jax.Array:
    """What each agent may commit this step in all B episodes together (rent set aside).

    The shared budget of footnote 2 (one wealth for B episodes): positive wealth
    less the most rent the agent can owe this step (it holds every slot).

    Args:
      wealth: f32[N].
      rate: ε of the rent rule.
      rule: one of :data:`RENT_RULES`.
      num_slots: what there is to hold: B rights (deep), B·G units (wide).

    Returns:
      f32[N] >= 0.
    """
    positive = jnp.maximum(wealth, 0.0)
    if rule == "flat":
        return jnp.maximum(positive - rate * num_slots, 0.0)
    return positive * (1.0 - jnp.minimum(rate, 1.0))


def episode_share(budget: jax.Array, num_episodes: int) -> jax.Array:
    """f32[N]: an agent's commitment cap in ONE of B episodes, an equal 1/B share of
    its budget (less :data:`BUDGET_HEADROOM`), so B episodes never overdraw it."""
    return budget * (1.0 - BUDGET_HEADROOM) / num_episodes


def scaled_commitment(raw: jax.Array, budget: jax.Array) -> jax.Array:
    """f32[B, N]: every positive bid of an agent scaled by one factor
    ``min(1, budget·(1 − headroom) / Σ_b max(raw_b, 0))`` (budget rule ``scale``).

    The agent's total commitment over the B episodes, hence what it can pay
    whatever it wins, is at most its budget; unlike :func:`episode_share` the
    ratios of its bids across episodes (the state-dependence of its values) are
    kept. Negative bids commit nothing and pass unchanged.

    Args:
      raw: f32[B, N] raw bids.
      budget: f32[N] >= 0.
    """
    committed = jnp.sum(jnp.maximum(raw, 0.0), axis=0)  # f32[N]
    room = budget * (1.0 - BUDGET_HEADROOM)
    factor = jnp.where(committed > room, room / jnp.maximum(committed, 1e-30), 1.0)
    return jnp.where(raw > 0.0, raw * factor[None, :], raw)


def living_rent(
    wealth: jax.Array,
    alive: jax.Array,
    num_slots: int,
    rate: jax.Array,
    rule: str = "proportional",
) -> jax.Array:
    """Rent of every living agent under ``rent_on: all`` (Baum's rent on computation).

    Each living agent pays what a holder of all ``num_slots`` slots would pay
    (:func:`rent_due` with full holdings): ε·max(w, 0) under the proportional rule,
    so w ← (1 − ε) w every step whether it wins or not; ε·slots under the flat rule.

    Args:
      wealth: f32[N] wealth before rent.
      alive: bool[N] living agents (empty slots pay nothing).
      num_slots: B rights (deep market).
      rate: ε.
      rule: one of :data:`RENT_RULES`.

    Returns:
      f32[N] rent.
    """
    full = jnp.full(wealth.shape, float(num_slots), jnp.float32)
    return jnp.where(alive, rent_due(wealth, full, num_slots, rate, rule), 0.0)


@struct.dataclass
class KahanSum:
    """A float32 running sum with its rounding compensation (Kahan 1965)."""

    total: jax.Array  # f32[]
    compensation: jax.Array  # f32[]

    @classmethod
    def of(cls, value) -> KahanSum:
        return cls(jnp.asarray(value, jnp.float32), jnp.zeros((), jnp.float32))

    def add(self, x: jax.Array) -> KahanSum:
        y = jnp.asarray(x, jnp.float32) - self.compensation
        t = self.total + y
        return KahanSum(t, (t - self.total) - y)

    @property
    def value(self) -> jax.Array:
        return self.total - self.compensation


@struct.dataclass
class Books:
    """The bank account and the counted flows across the market's boundary."""

    bank: KahanSum  # the founder/bank: sells first rights, keeps (1-γ) remainders
    initial: jax.Array  # f32[], Σ wealth + bank when the books were opened
    rewards_in: KahanSum  # rewards paid into the economy by the environment
    rent_out: KahanSum  # rent taken out of the economy
    allowances_in: KahanSum  # allowances granted to entrants
    net_inflow: KahanSum  # rewards − rent + allowances, summed per round

    @classmethod
    def open(cls, agent_wealth: jax.Array, bank: float = 0.0) -> Books:
        """Opens the books with the agents' wealth f32[N] and the bank's balance."""
        initial = jnp.sum(agent_wealth) + jnp.float32(bank)
        return cls(
            KahanSum.of(bank),
            initial,
            KahanSum.of(0.0),
            KahanSum.of(0.0),
            KahanSum.of(0.0),
            KahanSum.of(0.0),
        )

    def record(
        self,
        *,
        bank_delta: jax.Array = 0.0,
        rewards: jax.Array = 0.0,
        rent: jax.Array = 0.0,
        allowances: jax.Array = 0.0,
    ) -> Books:
        """Adds one round of flows (each an f32 scalar)."""
        rewards, rent, allowances = (
            jnp.asarray(x, jnp.float32) for x in (rewards, rent, allowances)
        )
        return Books(
            bank=self.bank.add(bank_delta),
            initial=self.initial,
            rewards_in=self.rewards_in.add(rewards),
            rent_out=self.rent_out.add(rent),
            allowances_in=self.allowances_in.add(allowances),
            net_inflow=self.net_inflow.add(rewards - rent + allowances),
        )

    def expected_total(self) -> jax.Array:
        """initial + rewards − rent + allowances.

        Summed round by round (``net_inflow``) rather than from the three running
        totals: those grow without bound, and the difference of large float32
        numbers would lose the cents that the check is about.
        """
        return self.initial + self.net_inflow.value


def books_imbalance(books: Books, agent_wealth: jax.Array) -> jax.Array:
    """Relative imbalance of the books: |actual − expected| / money in circulation.

    Args:
      books: the market's books.
      agent_wealth: f32[N] (or f32[..., N]) the agents' wealth.

    Returns:
      f32 scalar; 0 for perfectly kept books.
    """
    actual = jnp.sum(agent_wealth) + books.bank.value
    expected = books.expected_total()
    scale = jnp.maximum(1.0, jnp.sum(jnp.abs(agent_wealth)) + jnp.abs(books.bank.value))
    return jnp.abs(actual - expected) / scale
