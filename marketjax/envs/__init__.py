"""marketjax.envs: our own environments, registered for configs by name."""

import functools

from marketjax.envs.bandit import make_bandit
from marketjax.envs.chain import make_chain
from marketjax.envs.duality import make_duality
from marketjax.envs.gymnax_adapter import register_env
from marketjax.envs.multicatch import make_multicatch

for _k in (2, 4):
    register_env(f"MultiCatch-{_k}", functools.partial(make_multicatch, _k))
# Chang et al. (2020)'s tabular tasks.
register_env("ChangBandit", make_bandit)
register_env("ChangChain", make_chain)
register_env("ChangDuality", make_duality)
