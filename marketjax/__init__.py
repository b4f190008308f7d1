"""marketjax: market-based AI in JAX.

The public modules are re-exported here (DESIGN.md, "Public contract"):

    from marketjax import auctions, equilibrium, nn_market, prices
    from marketjax import lmsr, double_auction   # markets beyond RL (issue 13)

They are imported lazily, so ``import marketjax`` stays cheap and a script that only
needs the auctions never pays for the embeddings.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC_MODULES = {
    "auctions": "marketjax.mechanisms.auctions",
    "payments": "marketjax.mechanisms.payments",
    "equilibrium": "marketjax.mechanisms.equilibrium",
    "nn_market": "marketjax.embeddings.nn_market",
    "prices": "marketjax.embeddings.prices",
    "double_auction": "marketjax.mechanisms.double_auction",
    "lmsr": "marketjax.mechanisms.lmsr",
}

__all__ = sorted(_PUBLIC_MODULES)


def __getattr__(name: str):
    if name in _PUBLIC_MODULES:
        module = importlib.import_module(_PUBLIC_MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'marketjax' has no attribute {name!r}")
