"""Property tests: random state dicts (names with any Unicode, every dtype,
empty and 0-d shapes) round-trip bit-exactly between monoquant and the
reference writers/readers, in both directions."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import safetensors.torch as safetensors_torch

from monoquant import io as mqio

from test_io_safetensors import ALL_DTYPES, bits_equal, sample

names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(lambda s: s != "__metadata__")
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3)
entries = st.dictionaries(names, st.tuples(st.sampled_from(ALL_DTYPES), shapes, st.integers(0, 2**31 - 1)), min_size=1,
                          max_size=6)


def build(spec):
    return {name: sample(dt, tuple(shape), seed) for name, (dt, shape, seed) in spec.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=entries)
def test_safetensors_round_trips_both_ways(tmp_path, spec):
    d = build(spec)
    ours, ref = tmp_path / "ours.safetensors", tmp_path / "ref.safetensors"
    mqio.save_state_dict(d, ours)
    safetensors_torch.save_file(d, str(ref))
    a = safetensors_torch.load_file(str(ours))
    b = mqio.load_state_dict(ref)
    for k, v in d.items():
        assert bits_equal(a[k], v) and bits_equal(b[k], v), k


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=entries)
def test_pt_round_trips_both_ways(tmp_path, spec):
    d = build(spec)
    ours, ref = tmp_path / "ours.pt", tmp_path / "ref.pt"
    mqio.save_state_dict(d, ours)
    torch.save(d, ref)
    a = torch.load(ours, weights_only=True)
    b = mqio.load_state_dict(ref)
    for k, v in d.items():
        assert bits_equal(a[k], v) and bits_equal(b[k], v), k
