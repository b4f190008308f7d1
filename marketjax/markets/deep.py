"""The deep market (Algorithm 1, Definition 2.1), batched over B episodes.

Each step, in every one of B parallel episodes that share one population's wealth
(the paper's footnote 2): every agent bids on the observation; bids are held to the
agent's budget (below) and masked by ``alive``; the auction picks the winner, who
buys the right to act from the previous owner (or from the bank at an episode's
start), acts, and collects the reward; owners pay rent (``ledger.rent_due``), or,
with ``rent_on="all"``, every living agent does (``ledger.living_rent``).
Settlement of all B episodes is one ``segment_sum`` over N+1 accounts (the agents
and the bank, ``ledger.transfer``); the books count every flow across the economy's
boundary.

**The shared budget.** Wealth is shared by the B episodes, so a per-episode cap
would let an agent commit B times its wealth (wealth 1, B = 64: it paid 1 in each
episode and ended at −63). Instead each bid is capped at an equal share, 1/B, of the
agent's bid budget (its positive wealth, less the most rent it can owe this step):
whatever it wins, it pays at most its own bid in each episode, so no account is
ever overdrawn by bids, whatever B. Only the world's negative rewards can take
wealth below zero; an agent without positive wealth cannot bid. With
``budget_rule="scale"`` (``ledger.scaled_commitment``) all of an agent's bids are
scaled by one factor so that their sum fits the budget instead: the same bound,
and the bids keep their ratios across episodes, at the price of a second
reduction over the [B, N] bids, the other way round from the auction's (0.34× the
raw env against 0.50× for the equal share, one elementwise ``min``; the default).

**The bid target.** The payoff stream a holder is paid is the next buyer's price,
a budgeted bid; ``bid_target="value"`` instead reports (for learning only) what the
next owner's unbudgeted bid says the stream is worth, so capped prices do not cap
the values agents learn (docs/deep_market.md, "CartPole: the price of binding
money"). ``bid_target="net"`` reports the price, but the reward a holder learns
from is net of the price on time it pays for the step (``owner_rent``): its
learned bid is then what holding the state is worth after paying for the time
still to come (Baum's Hayek: an undo buys at V(s) and sells at V(s') < V(s)).
Payments are the same under all three.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from marketjax.agents.families import AgentFamily, population_bids, winner_actions
from marketjax.agents.population import Population
from marketjax.core.axes import axes
from marketjax.envs.gymnax_adapter import BatchedEnv, EpisodeStats, track_episodes
from marketjax.learners.base import Experience
from marketjax.markets.ledger import (
    BUDGET_HEADROOM,  # noqa: F401  (re-exported: the rule lives in the ledger)
    BUDGET_RULES,
    RENT_BASES,
    Books,
    bid_budget,
    episode_share,
    limited_liability,
    living_rent,
    rent_due,
    scaled_commitment,
    transfer,
)
from marketjax.mechanisms.auctions import rank_bids
from marketjax.mechanisms.payments import check_rule, payment, seller_share

BANK = -1  # owner index of the bank/founder account


@struct.dataclass
class DeepMarketParams:
    """Sweepable numbers of the market (array leaves)."""

    gamma: jax.Array  # f32[], seller's share γ of its credit
    rent: jax.Array  # f32[], ε of the rent rule
    explore: jax.Array  # f32[], P(the right goes to a uniformly drawn valid agent)
    # f32[] or None: a flat charge per step of holding, paid by the owner on top of
    # the rent rule (a price on time: an undo/redo cycle costs its cyclers)
    owner_rent: jax.Array | None = None


@struct.dataclass
class DeepMarketState:
    """A population, B episodes and the books."""

    population: Population
    env_state: Any = axes("B")  # gymnax state, leaves [B, ...]
    obs: jax.Array = axes("B", "D")  # f32[B, D], current observation per episode
    owner: jax.Array = axes("B")  # i32[B], owner of each episode's right (-1: bank)
    stats: EpisodeStats = axes("B")  # running returns of the B episodes
    books: Books


class StepRecord(NamedTuple):
    """What one market step did (stacked over steps by ``lax.scan``)."""

    obs: jax.Array  # f32[B, D], observation the agents bid on
    winner: jax.Array  # i32[B], buyer of the right (-1: nobody valid, bank acted)
    paid: jax.Array  # f32[B], price the buyer paid
    credit: jax.Array  # f32[B], the seller's credit for this sale
    top_bid: jax.Array  # f32[B], highest valid (budgeted) bid
    capped: jax.Array  # bool[B], the winner's bid was cut by its budget
    reward: jax.Array  # f32[B]
    done: jax.Array  # bool[B], the episode ended at this step
    completed_return_sum: jax.Array  # f32[], returns of episodes ended this step
    completed_count: jax.Array  # f32[]
    value_credit: jax.Array | None = None  # f32[B], credit at unbudgeted bids
    action: jax.Array | None = None  # i32[B], action taken (qnet: its Q output)


# What a holder's bid regresses on (above); "net": the price, less the owner's
# charge per step held (``owner_rent``), so that learned bids fall with the time
# still needed and an undo (which adds time) buys high and sells low.
BID_TARGETS = ("price", "value", "net")


def budgeted_bids(raw: jax.Array, budget: jax.Array, rule: str = "share") -> jax.Array:
    """Caps every bid at an equal share of its bidder's budget: min(raw, budget/B).

    Args:
      raw: f32[B, N] raw bids of N agents in B episodes.
      budget: f32[N] >= 0, what each agent may commit this step in all B.
      rule: ``"share"`` (the cap above) or ``"scale"``
        (``ledger.scaled_commitment``: one factor per agent).

    Returns:
      f32[B, N]; whatever an agent wins, its payments (each at most its own bid)
      sum to at most its budget. Negative bids (the bidder is paid to take the
      right) commit nothing and pass unchanged.
    """
    if rule == "scale":
        return scaled_commitment(raw, budget)
    return jnp.minimum(raw, episode_share(budget, raw.shape[0])[None, :])


class DeepMarket:
    """Algorithm 1 on an environment, for a fixed agent family and auction rule.

    Shapes are fixed here (N agents via the population, B episodes via the env);
    the numbers you might sweep are in :class:`DeepMarketParams`.
    """

    def __init__(
        self,
        env: BatchedEnv,
        family: AgentFamily,
        rule: str,
        rent_rule: str = "proportional",
        rent_on: str = "owners",
        reserve: float = 0.0,
        budget_rule: str = "share",
        bid_target: str = "price",
    ):
        check_rule(rule)
        if budget_rule not in BUDGET_RULES:
            raise ValueError(f"unknown budget rule {budget_rule!r}; {BUDGET_RULES}")
        if bid_target not in BID_TARGETS:
            raise ValueError(f"unknown bid target {bid_target!r}; {BID_TARGETS}")
        if not reserve >= 0.0:
            raise ValueError(f"reserve price must be >= 0; got {reserve}")
        if rent_on not in RENT_BASES:
            raise ValueError(f"unknown rent base {rent_on!r}; expected {RENT_BASES}")
        if not env.spec.discrete:
            raise ValueError(
                f"the deep market needs discrete actions; {env.name} "
                "has a Box action space"
            )
        self.env = env
        self.family = family
        self.rule = rule
        self.rent_rule = rent_rule
        self.rent_on = rent_on
        self.reserve = float(reserve)  # the bank's reserve price (0: none)
        self.budget_rule = budget_rule
        self.bid_target = bid_target

    def init(self, key: jax.Array, population: Population) -> DeepMarketState:
        obs, env_state = self.env.reset(key)
        b = self.env.num_envs
        return DeepMarketState(
            population=population,
            env_state=env_state,
            obs=obs,
            owner=jnp.full((b,), BANK, jnp.int32),
            stats=EpisodeStats.zeros(b),
            books=Books.open(population.wealth),
        )

    def bid_budget(self, wealth: jax.Array, rent: jax.Array) -> jax.Array:
        """f32[N]: what an agent may commit to bids this step (rent set aside)."""
        return bid_budget(wealth, rent, self.rent_rule, self.env.num_envs)

    def capped_bids(self, population: Population, obs: jax.Array, rent: jax.Array):
        """Budgeted bids f32[B, N], validity bool[B, N] and raw bids f32[B, N]."""
        raw = population_bids(self.family, population.params, obs, population.shared)
        budget = self.bid_budget(population.wealth, rent)
        bids = budgeted_bids(raw, budget, self.budget_rule)
        valid = (population.alive & (population.wealth > 0.0))[None, :]
        return bids, jnp.broadcast_to(valid, bids.shape), raw

    def auction(
        self,
        key: jax.Array,
        population: Population,
        obs: jax.Array,
        params: DeepMarketParams,
        bank_sells: jax.Array | None = None,
    ):
        """Runs the auctions of all B episodes (with an exploration lottery).

        With probability ``explore`` an episode's right goes to a uniformly drawn
        valid agent (validity is per agent, shared by all episodes), who pays no
        more than its own bid. One uniform draw per episode decides the coin and
        one picks the agent (a few wide draws are much cheaper than a categorical
        over N on CPU, where threefry runs as a rolled loop).

        **The bank's reserve price.** Where the bank sells (``bank_sells`` bool[B]:
        a fresh episode, or a right nobody bought) and ``reserve > 0``, only bids
        of at least the reserve are valid and the buyer pays at least the reserve
        (Myerson 1981's reserve; never more than its own bid): with B auto-reset
        episodes and a reward per step, every owner earns the same per owned step
        whatever its program, and the price of a fresh episode is where a program
        that ends episodes early pays for it (docs/deep_market.md). An exploration
        draw that does not meet the reserve leaves the auction's winner in place;
        where nobody meets it the bank keeps the right and acts at random.

        Returns ``(winner i32[B], top f32[B], Payment, capped bool[B])``.
        """
        return self.auction_values(key, population, obs, params, bank_sells)[:4]

    def auction_values(self, key, population, obs, params, bank_sells=None):
        """:meth:`auction`, plus the seller's credit at the unbudgeted bids, f32[B]
        (``bid_target="value"``; the budgeted credit otherwise), and bool[B]: the
        exploration lottery chose the winner."""
        bids, valid, raw = self.capped_bids(population, obs, params.rent)
        at_reserve = self.reserve > 0.0 and bank_sells is not None
        if at_reserve:
            valid = valid & (~bank_sells[:, None] | (bids >= self.reserve))
        ranking = rank_bids(bids, valid)
        ok = population.alive & (population.wealth > 0.0)  # bool[N]
        count = jnp.sum(ok.astype(jnp.int32))
        valid_slots = jnp.argsort(~ok, stable=True).astype(jnp.int32)  # valid first
        u = jax.random.uniform(key, (2, *ranking.winner.shape))
        draw = (u[1] * count.astype(u.dtype)).astype(jnp.int32)
        pick = jnp.minimum(draw, jnp.maximum(count - 1, 0))
        lottery = valid_slots[pick]
        use_lottery = (u[0] < params.explore) & (ranking.winner >= 0)
        lottery_bid = jnp.take_along_axis(bids, lottery[:, None], axis=-1)[:, 0]
        if at_reserve:
            use_lottery = use_lottery & (~bank_sells | (lottery_bid >= self.reserve))
        winner = jnp.where(use_lottery, lottery, ranking.winner)
        own = jnp.where(use_lottery, lottery_bid, ranking.top)
        safe = jnp.maximum(winner, 0)
        share = episode_share(
            self.bid_budget(population.wealth, params.rent), bids.shape[0]
        )
        if self.budget_rule == "scale":  # the winner's bid was scaled down
            capped = jnp.take_along_axis(raw, safe[:, None], -1)[:, 0] > own
        else:  # a capped winner bid its share exactly: compare with the share
            capped = own >= share[safe]
        pay = payment(self.rule, ranking.top, ranking.second, own)
        value = pay.credit
        if self.bid_target == "value":
            raw_rank = rank_bids(raw, valid)
            raw_own = jnp.take_along_axis(raw, safe[:, None], axis=-1)[:, 0]
            value = payment(self.rule, raw_rank.top, raw_rank.second, raw_own).credit
        if at_reserve:  # own >= reserve wherever the bank sells to somebody
            floor = jnp.where(bank_sells, self.reserve, -jnp.inf)
            pay = pay._replace(
                paid=jnp.maximum(pay.paid, floor),
                credit=jnp.maximum(pay.credit, floor),
            )
            value = jnp.maximum(value, floor)
        nobody = winner < 0
        pay = pay._replace(
            paid=jnp.where(nobody, 0.0, pay.paid),
            credit=jnp.where(nobody, 0.0, pay.credit),
        )
        value = jnp.where(nobody, 0.0, value)
        explored = use_lottery & ~nobody
        return winner, ranking.top, pay, capped & ~nobody, value, explored

    def step(
        self, key: jax.Array, state: DeepMarketState, params: DeepMarketParams
    ) -> tuple[DeepMarketState, StepRecord]:
        """One step of every episode: bid, auction, act, env step, settle."""
        k_auction, k_act, k_random, k_env = jax.random.split(key, 4)
        pop = state.population
        n = pop.size
        winner, top, pay, capped, value, explored = self.auction_values(
            k_auction, pop, state.obs, params, state.owner < 0
        )
        action = winner_actions(k_act, self.family, pop.params, winner, state.obs)
        num_actions = self.env.spec.num_actions

        def draw_random_action():
            u = jax.random.uniform(k_random, winner.shape)
            return jnp.minimum((u * num_actions).astype(jnp.int32), num_actions - 1)

        # The bank acts (uniformly at random) only where nobody could bid: skip
        # the draw when no episode needs it.
        # A program that reads its own values (qnet) explores by acting at random
        # where the lottery handed it the right (ε-greedy, as in PQN).
        by_values = self.family.values is not None
        at_random = (winner < 0) | explored if by_values else winner < 0
        random_action = jax.lax.cond(
            jnp.any(at_random), draw_random_action, lambda: jnp.zeros_like(winner)
        )
        action = jnp.where(at_random, random_action, action)
        obs, env_state, reward, done, _ = self.env.step(k_env, state.env_state, action)

        # Settlement: account n is the bank. Buyer pays, seller gets γ·credit, the
        # bank keeps paid − γ·credit, the owner collects the reward and pays rent.
        to_seller = seller_share(pay.credit, params.gamma)
        buyer = jnp.where(winner >= 0, winner, n)
        seller = jnp.where(state.owner >= 0, state.owner, n)
        accounts = [buyer, seller, jnp.full_like(buyer, n)]
        amounts = [reward - pay.paid, to_seller, pay.paid - to_seller]
        if self.rent_on == "owners":
            # Rent per right held (the ledger's rule; one holding per episode).
            owner_wealth = pop.wealth[jnp.maximum(winner, 0)]
            rent = jnp.where(
                winner >= 0,
                rent_due(
                    owner_wealth, 1.0, winner.shape[0], params.rent, self.rent_rule
                ),
                0.0,
            )
            amounts[0] = amounts[0] - rent
        else:  # every living agent pays, owner or not: one more N-long payment
            rent = living_rent(
                pop.wealth, pop.alive, winner.shape[0], params.rent, self.rent_rule
            )
        rent_total = jnp.sum(rent)
        if params.owner_rent is not None:  # the price on time, on top of the rent
            held = jnp.where(winner >= 0, params.owner_rent, 0.0)  # f32[B]
            amounts[0] = amounts[0] - held
            rent_total = rent_total + jnp.sum(held)
        # [3, B] payments, not a [3B] concatenation: a sharded B axis stays put.
        delta = transfer(jnp.stack(accounts), jnp.stack(amounts), n)
        if self.rent_on != "owners":  # added last, as the scatter would
            delta = delta.at[:n].add(-rent)
        # Limited liability: a seller handing on a bad (negative price) pays at
        # most what it has; the bank covers the rest (ledger.limited_liability).
        resale = transfer(seller[None], jnp.maximum(-to_seller, 0.0)[None], n)[:n]
        after = pop.wealth + delta[:n]
        covered = limited_liability(after, resale)
        delta = delta.at[n].add(-jnp.sum(covered))
        books = state.books.record(
            bank_delta=delta[n], rewards=jnp.sum(reward), rent=rent_total
        )
        # A fully covered account ends at exactly 0 (not 0 ± float32 rounding).
        full = (covered > 0.0) & (covered >= -after)
        population = pop.replace(wealth=jnp.where(full, 0.0, after + covered))
        stats, ret_sum, ret_count = track_episodes(state.stats, reward, done)
        # At an episode's end the last owner sells to nobody: the bank owns the
        # right of the fresh episode and sells it at the next step.
        owner = jnp.where(done, BANK, winner)
        new_state = DeepMarketState(population, env_state, obs, owner, stats, books)
        record = StepRecord(
            state.obs,
            winner,
            pay.paid,
            pay.credit,
            top,
            capped,
            reward,
            done,
            ret_sum,
            ret_count,
            value if self.bid_target == "value" else None,
            action if by_values else None,
        )
        return new_state, record

    def forget(self, state: DeepMarketState, replaced: jax.Array) -> DeepMarketState:
        """Hands rights held by replaced slots (bool[N]) back to the bank, so a
        newcomer is never credited for its predecessor's sale."""
        held = state.owner >= 0
        gone = held & replaced[jnp.maximum(state.owner, 0)]
        return state.replace(owner=jnp.where(gone, BANK, state.owner))

    def experience(
        self,
        key: jax.Array,
        state: DeepMarketState,
        rec: StepRecord,
        params: DeepMarketParams,
    ) -> Experience:
        """The rollout as one payoff stream per episode (the right to act).

        The credit after the last step is bootstrapped from an auction on the last
        observation, without exploration.
        """
        greedy = params.replace(explore=jnp.zeros_like(params.explore))
        _, _, last, _, last_value, _ = self.auction_values(
            key, state.population, state.obs, greedy, state.owner < 0
        )
        if self.bid_target == "value":
            credit = jnp.concatenate([rec.value_credit[1:], last_value[None]], 0)
        else:
            credit = jnp.concatenate([rec.credit[1:], last.credit[None]], axis=0)
        reward = rec.reward  # f32[T, B]
        if self.bid_target == "net" and params.owner_rent is not None:
            reward = reward - jnp.where(rec.winner >= 0, params.owner_rent, 0.0)
        return Experience(
            obs=rec.obs,
            owner=rec.winner[..., None],
            output=(jnp.zeros_like(rec.winner) if rec.action is None else rec.action)[
                ..., None
            ],
            reward=reward[..., None],
            credit_next=credit[..., None],
            done=rec.done,
        )

    def forget_owners(self, state: DeepMarketState, replaced: jax.Array):
        """Alias of :meth:`forget` (the first wave's name)."""
        return self.forget(state, replaced)
