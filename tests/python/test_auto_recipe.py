"""monoquant.auto_recipe: the smallest recipe meeting a measured cosine, the most accurate within a size,
and a time budget that still returns (and saves) a recipe. The oracle for every cosine is the quantized
model's output, recomputed here with torch, against the float model's."""

import json
import os
import subprocess

import pytest
import torch
import transformers

import monoquant
from monoquant.errors import InvalidArgumentError


def _bert():
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=0.2)
    return transformers.BertModel(cfg).eval()


def _batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 96, (8, 16), generator=g)} for _ in range(n)]


def _cosine(model, recipe, batches):
    """Output cosine (all positions of all batches, as one vector) of the recipe's model vs the float one."""
    q = monoquant.quantize(model, bits=4, weight_only=True, recipe=recipe, show_progress=False).model
    with torch.no_grad():
        ref = torch.cat([model(**b).last_hidden_state.flatten() for b in batches]).double()
        got = torch.cat([q(**b).last_hidden_state.flatten() for b in batches]).double()
    return float(ref @ got / (ref.norm() * got.norm()))


@pytest.fixture(scope="module")
def setup():
    model, cal = _bert(), _batches()
    report = monoquant.sensitivity(model, cal, candidates=("int4", "int8"), group_size=32, show_progress=False)
    return model, cal, report


def test_min_cosine_is_met_and_measured(setup):
    model, cal, report = setup
    uniform4 = _cosine(model, {"type:Linear": {"bits": 4, "group_size": 32}}, cal)
    goal = 1.0 - (1.0 - uniform4) / 4  # between uniform int4 and float: needs a mix
    ar = monoquant.auto_recipe(model, cal, {"min_cosine": goal}, group_size=32, report=report, show_progress=False)
    assert ar.met and not ar.stopped_by_budget
    assert ar.cosine >= goal
    assert abs(_cosine(model, ar.recipe, cal) - ar.cosine) < 1e-6  # what it measured is what quantize gives
    kinds = {v if isinstance(v, str) else v["bits"] for v in ar.recipe.values()}
    assert len(kinds) > 1, ar.recipe  # a mix, not a uniform answer
    # the path runs from the smallest model to the float one, bytes never falling
    sizes = [p.bytes for p in ar.path]
    assert sizes == sorted(sizes) and ar.path[0].counts == {"int4": len(ar.recipe)}
    # no measured recipe smaller than the answer met the goal
    assert all(p.measured_cosine < goal for p in ar.points if p.bytes < ar.bytes)
    int8_bpw = monoquant.quantize(model, bits=8, show_progress=False).report.to_dict()["totals"]["bits_per_weight"]
    assert ar.bits_per_weight < int8_bpw + 1e-9 or kinds & {"float"}


def test_size_targets(setup, tmp_path):
    model, cal, report = setup
    smallest = monoquant.auto_recipe(model, cal, {"max_bits_per_weight": 100.0}, group_size=32, report=report,
                                     show_progress=False)
    assert smallest.cosine == pytest.approx(1.0) and smallest.met  # room for everything: all float
    bpw4 = smallest.path[0].bits_per_weight
    ar = monoquant.auto_recipe(model, cal, {"max_bits_per_weight": bpw4 + 1.0}, group_size=32, report=report,
                               show_progress=False)
    assert ar.met and ar.bits_per_weight <= bpw4 + 1.0
    assert ar.cosine is not None and abs(_cosine(model, ar.recipe, cal) - ar.cosine) < 1e-6
    # the file's quantized layers carry about the bits promised (float layers are not in the totals)
    res = monoquant.quantize(model, bits=4, weight_only=True, recipe=ar.recipe, show_progress=False)
    assert res.report.to_dict()["totals"]["bits_per_weight"] > 0
    by_bytes = monoquant.auto_recipe(model, cal, {"max_bytes": ar.bytes}, group_size=32, report=report,
                                     show_progress=False)
    assert by_bytes.bytes <= ar.bytes
    with pytest.raises(InvalidArgumentError, match="no recipe fits"):
        monoquant.auto_recipe(model, cal, {"max_bits_per_weight": 1.0}, group_size=32, report=report)


def test_time_budget_still_returns_and_saves(cli, tmp_path):
    model, cal = _bert(), _batches()
    ar = monoquant.auto_recipe(model, cal, {"min_cosine": 0.999}, group_size=32, time_budget_s=0.0,
                               show_progress=False)
    assert ar.stopped_by_budget
    linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert set(ar.recipe) == set(linears)
    ar.save(tmp_path / "recipe.json")
    assert json.loads((tmp_path / "recipe.json").read_text()) == ar.recipe
    assert ar.to_dict()["stopped_by_budget"] is True
    # the saved recipe is one the API and the CLI take
    monoquant.quantize(model, bits=4, recipe=ar.recipe, show_progress=False)
    model.save_pretrained(tmp_path / "m")
    r = subprocess.run([cli, "quantize", tmp_path / "m", "-o", tmp_path / "q.safetensors", "--bits", "4",
                        "--recipe", tmp_path / "recipe.json", "--quiet"], capture_output=True, text=True,
                       env=dict(os.environ, CI="1"))
    assert r.returncode == 0, r.stderr


def test_bad_targets():
    model, cal = _bert(), _batches(1)
    for t in ({"min_cosine": 1.5}, {"cosine": 0.9}, {"min_cosine": 0.9, "max_bytes": 10}, "0.99"):
        with pytest.raises(InvalidArgumentError, match="target"):
            monoquant.auto_recipe(model, cal, t)
    with pytest.raises(InvalidArgumentError, match="candidate"):
        monoquant.auto_recipe(model, cal, {"min_cosine": 0.9}, candidates=("int3",))
