"""Leave a model exactly as it was found, whatever a saliency method did to it.

TorchRay's methods attach :class:`torchray.attribution.common.Probe` hooks, switch
``inplace`` flags off, freeze parameters (``requires_grad_(False)``) and put the model in eval
mode; most of them undo this only when they finish normally, and some never undo it
(extremal perturbation leaves the parameters frozen). :class:`ModelGuard` snapshots the
model before a method runs and restores it afterwards, also when the method raises:

* every forward / forward-pre / backward hook that appeared on any sub-module is removed;
* ``inplace`` attributes, ``requires_grad`` of parameters and the ``training`` flag of every
  module are restored;
* instance attributes that a method patched onto modules (``forward``, ``skip``) through
  :meth:`ModelGuard.patch_attr` are put back (or deleted if they did not exist).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["ModelGuard", "hook_count", "hooks_of"]

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)
# extra per-hook bookkeeping dicts keyed by the same hook ids (PyTorch >= 2.0)
_EXTRA_DICTS = (
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks_with_kwargs",
)

_MISSING = object()


def hooks_of(module: nn.Module) -> dict[str, int]:
    """Number of hooks of each kind registered directly on ``module``."""
    return {name: len(getattr(module, name, {})) for name in _HOOK_DICTS}


def hook_count(model: nn.Module) -> int:
    """Total number of module hooks registered anywhere in ``model``."""
    return sum(sum(hooks_of(m).values()) for m in model.modules())


class ModelGuard:
    """Context manager: snapshot ``model`` on entry, restore it on exit (also on error)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self._hook_ids: dict[int, dict[str, set]] = {}
        self._inplace: list[tuple[nn.Module, bool]] = []
        self._requires_grad: list[tuple[nn.Parameter, bool]] = []
        self._training: list[tuple[nn.Module, bool]] = []
        self._patched: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> ModelGuard:
        for m in self.model.modules():
            self._hook_ids[id(m)] = {n: set(getattr(m, n, {}).keys()) for n in _HOOK_DICTS}
            if hasattr(m, "inplace"):
                self._inplace.append((m, m.inplace))
            self._training.append((m, m.training))
        self._requires_grad = [(p, p.requires_grad) for p in self.model.parameters()]
        return self

    def patch_attr(self, obj: Any, name: str, value: Any) -> None:
        """Set ``obj.name = value`` until the guard exits (then restore or delete it)."""
        modules = getattr(obj, "_modules", {})
        if name in modules:
            old = modules[name]
        else:
            old = obj.__dict__.get(name, _MISSING)
        self._patched.append((obj, name, old))
        setattr(obj, name, value)

    def __exit__(self, *exc) -> None:
        # 1. patched attributes, newest first (so nested patches unwind correctly)
        for obj, name, old in reversed(self._patched):
            if old is _MISSING:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
            else:
                setattr(obj, name, old)
        self._patched.clear()
        # 2. hooks that were not there before (on old and on new sub-modules)
        for m in self.model.modules():
            before = self._hook_ids.get(id(m), {})
            for n in _HOOK_DICTS:
                d = getattr(m, n, None)
                if not d:
                    continue
                for hid in [h for h in d.keys() if h not in before.get(n, set())]:
                    d.pop(hid, None)
                    for extra in _EXTRA_DICTS:
                        e = getattr(m, extra, None)
                        if isinstance(e, dict):
                            e.pop(hid, None)
        # 3. flags
        for m, flag in self._inplace:
            m.inplace = flag
        for p, flag in self._requires_grad:
            p.requires_grad_(flag)
        for m, flag in self._training:
            m.training = flag


@contextmanager
def guarded(model: nn.Module) -> Iterator[ModelGuard]:
    """``with guarded(model) as g: ...`` -- functional spelling of :class:`ModelGuard`."""
    with ModelGuard(model) as g:
        yield g
