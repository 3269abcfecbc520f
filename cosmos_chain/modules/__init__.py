"""Built-in contracts. ``default_module_classes()`` = every ``@register_module`` class, sorted by name.

To add a module: subclass :class:`~cosmos_chain.modules.base.Module`, set ``name``, write
``exec_<action>`` / ``query_<action>`` methods and decorate it with ``@register_module`` (then import
its file before creating the ChainApp — or list its module path in ``BUILTIN_MODULE_PATHS``), or pass
an instance with ``ChainApp(..., modules=[MyModule()])``. Every node must run the same module set.
"""

from __future__ import annotations

import importlib

from .base import MODULE_REGISTRY, Context, Module, module_address, register_module

__all__ = ["default_module_classes", "BUILTIN_MODULE_PATHS", "Module", "Context", "register_module", "module_address"]

#: Python modules imported (for their ``@register_module`` side effect) by ``default_module_classes``.
BUILTIN_MODULE_PATHS: list[str] = [
    "cosmos_chain.modules.auth",
    "cosmos_chain.modules.bank",
    "cosmos_chain.modules.btc_light_client",
    "cosmos_chain.modules.btc_staking",
    "cosmos_chain.modules.finality",
    "cosmos_chain.modules.mesh",
    "cosmos_chain.modules.valset",
]


def default_module_classes() -> list[type[Module]]:
    """Registered module classes, sorted by name (deterministic hook order)."""
    for path in BUILTIN_MODULE_PATHS:
        try:
            importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name != path:  # a real import error inside the module
                raise
    return [MODULE_REGISTRY[n] for n in sorted(MODULE_REGISTRY)]
