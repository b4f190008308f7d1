"""marketjax.envs: our own environments, registered for configs by name."""

import functools

from marketjax.envs.gymnax_adapter import register_env
from marketjax.envs.multicatch import make_multicatch

for _k in (2, 4):
    register_env(f"MultiCatch-{_k}", functools.partial(make_multicatch, _k))
