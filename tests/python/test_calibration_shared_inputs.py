"""calibrate() observes a tensor that several modules take (query / key / value) once.

The oracle: each module calibrated alone (modules=[name]), where nothing can be shared.
Every observer's full state (statistics included) must be equal, whatever the sharing
pattern does between batches."""

import pytest
import torch
from torch import nn

import monoquant


class Attentionish(nn.Module):
    """q, k, v read the same x; out reads another tensor. With split=True for a batch
    (its first row is negative), k gets a different tensor, so the q/k/v group breaks."""

    def __init__(self, d=24):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        split = bool(x[0, 0] < 0)
        q = self.q(x)
        k = self.k(x * 2 if split else x)
        v = self.v(x)
        return self.out(q + k + v)


class CalledTwice(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        return self.a(x) + self.a(x) + self.b(x)


class InPlaceBetween(nn.Module):
    def __init__(self, d=16):
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        x = x.clone()
        y = self.a(x)
        x.add_(3.0)  # b sees other values in the same tensor object
        return y + self.b(x)


def batches(seed, n=4, rows=32, d=24, negative_first=()):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(rows, d, generator=g) * (1 + i)
        x[0, 0] = -abs(x[0, 0]) if i in negative_first else abs(x[0, 0])
        out.append(x)
    return out


def states(stats):
    return {n: d["input"].state() for n, d in stats.items()}


def alone(model, data, observer):
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return {n: monoquant.calibrate(model, data, modules=[n], observer=observer, show_progress=False)[n]["input"].state()
            for n in names}


@pytest.mark.parametrize("observer", ["histogram", "minmax", "moving_average_minmax"])
@pytest.mark.parametrize("negative_first", [(), (2,), (0,), (0, 1, 2, 3), (1, 3)])
def test_same_statistics_as_each_module_alone(observer, negative_first):
    model = Attentionish().eval()
    data = batches(1, negative_first=negative_first)
    shared = monoquant.calibrate(model, data, observer=observer, show_progress=False)
    assert states(shared) == alone(model, data, observer)


@pytest.mark.parametrize("model", [CalledTwice(), InPlaceBetween()], ids=["called_twice", "in_place"])
def test_repeated_calls_and_in_place_changes_are_not_shared(model):
    data = batches(2, d=16)
    got = monoquant.calibrate(model.eval(), data, observer="histogram", show_progress=False)
    assert states(got) == alone(model, data, "histogram")
    if isinstance(model, CalledTwice):  # a observed each of its two calls
        assert got["a"]["input"].count == 2 * got["b"]["input"].count


def test_shared_tensor_is_observed_once_and_observers_come_back_separate():
    calls = []

    class Counting(monoquant.MinMaxObserver):
        def observe(self, x):
            calls.append(x.data_ptr())
            super().observe(x)

    model = Attentionish().eval()
    data = batches(3)
    stats = monoquant.calibrate(model, data, observer=Counting, show_progress=False)
    # q, k, v share one observation per batch, out has its own: 2 per batch, not 4.
    assert len(calls) == 2 * len(data)
    objs = [stats[n]["input"] for n in ("q", "k", "v", "out")]
    assert len({id(o) for o in objs}) == 4
    assert objs[0].state() == objs[1].state() == objs[2].state()
    objs[0].reset()  # one module's observer is its own
    assert objs[1].count > 0


def test_differently_configured_observers_are_not_merged():
    bins = iter([64, 128, 256, 512])
    model = Attentionish().eval()
    data = batches(4)  # q, k and v get the same tensor in every batch
    stats = monoquant.calibrate(model, data, observer=lambda: monoquant.HistogramObserver(bins=next(bins)),
                                show_progress=False)
    for n, b in zip(("q", "k", "v"), (64, 128, 256)):
        ref = monoquant.HistogramObserver(bins=b)
        for x in data:
            ref.observe(x)
        assert stats[n]["input"].state() == ref.state()
