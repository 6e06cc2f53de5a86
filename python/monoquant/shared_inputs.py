"""One observation per distinct input tensor during calibration.

Several modules often take the very same tensor: BERT's query, key and value all read the
hidden states, so a third of a layer's observed values would otherwise be binned three
times. `SharedInputObservers` lets modules that keep receiving the same tensor object share
one observer while they do, and observes that tensor once:

- hooks call `add(name, x)` in forward order, and `x` is observed at once (a later in-place
  change to it cannot reach the statistics); a following call with the same tensor object,
  unchanged since (`_version`), by a module that shares the observer, costs nothing;
- a module whose observer has seen nothing yet joins the group of a fresh observer that is
  configured alike (equal `state()` before it observed this tensor);
- before a shared observer observes, a copy of it is kept: a member of its group that does
  not receive this tensor gets that copy (the statistics so far) when the next tensor
  comes (`resolve()`), so every module's observer sees exactly the sequence of inputs it
  would have seen alone: the result does not change, only its cost;
- `finish()` gives every module its own observer object again.
"""

from __future__ import annotations

from typing import Dict, Optional, Set

import torch

from .observers import Observer


class _Observed:
    """One observer's observation of the pending tensor."""

    def __init__(self, obs: Observer, before: Optional[Observer], fresh_state: Optional[str], name: str):
        self.obs, self.before, self.fresh_state, self.receivers = obs, before, fresh_state, {name}


class SharedInputObservers:
    def __init__(self, observers: Dict[str, Observer]):
        self._obs = observers  # module name -> its input observer (updated in place)
        self._members: Dict[int, Set[str]] = {id(o): {n} for n, o in observers.items()}
        self._fresh: Set[int] = set(self._members)  # observers that have observed nothing
        self._pending: Optional[torch.Tensor] = None
        self._pending_version = -1
        self._observed: Dict[int, _Observed] = {}

    def add(self, name: str, x: torch.Tensor) -> None:
        same = self._pending is x and x._version == self._pending_version
        if not same or any(name in e.receivers for e in self._observed.values()):
            self.resolve()  # a module called twice on one tensor observes it twice
            self._pending, self._pending_version = x, x._version
        obs = self._obs[name]
        entry = self._observed.get(id(obs))
        if entry is not None:  # shares an observer that has just observed this very tensor
            entry.receivers.add(name)
            return
        if id(obs) in self._fresh and self._members[id(obs)] == {name}:
            state = obs.state()
            for e in self._observed.values():
                if e.fresh_state == state:  # alike and fresh: join that group
                    del self._members[id(obs)]
                    self._fresh.discard(id(obs))
                    self._obs[name] = e.obs
                    self._members[id(e.obs)].add(name)
                    e.receivers.add(name)
                    return
        before = obs.copy() if len(self._members[id(obs)]) > 1 else None
        fresh_state = obs.state() if id(obs) in self._fresh else None
        obs.observe(x)
        self._fresh.discard(id(obs))
        self._observed[id(obs)] = _Observed(obs, before, fresh_state, name)

    def resolve(self) -> None:
        """Ends the pending tensor: members of a group that did not receive it take the copy
        from before it."""
        for e in self._observed.values():
            group = self._members[id(e.obs)]
            outside = group - e.receivers
            if outside:
                for m in outside:
                    self._obs[m] = e.before
                self._members[id(e.before)] = outside
                self._members[id(e.obs)] = group & e.receivers
        self._observed = {}
        self._pending = None

    def finish(self) -> Dict[str, Observer]:
        """Resolves, then gives each module its own observer object (equal statistics)."""
        self.resolve()
        out: Dict[str, Observer] = {}
        given: Set[int] = set()
        for n, obs in self._obs.items():
            out[n] = obs if id(obs) not in given else obs.copy()
            given.add(id(obs))
        return out
