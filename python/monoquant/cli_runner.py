"""The part of ``monoquant quantize`` that runs the model.

GPTQ, AWQ, SmoothQuant and static ranges from data need the model's forward pass on
calibration batches; the C++ binary has no model runtime, so it checks its flags and hands
them here as one JSON argument (src/cli/model_run.cpp):

    python -c "from monoquant.cli_runner import main; ..." '{"model": DIR, "output": OUT, "bits": 4, ...}'

This builds the model from the directory (``monoquant.quantize`` on a path), reads the
batches with ``tokenized_batches``, quantizes with the Python API and saves with
``QuantizationResult.save``. It exits with the binary's codes (README.md): 3 invalid input,
4 bad file, 5 I/O, 6 unsupported, 8 warnings under --strict (nothing written), 1 a bug.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any, Dict, List, Optional

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INVALID, EXIT_FORMAT, EXIT_IO, EXIT_UNSUPPORTED = 0, 1, 2, 3, 4, 5, 6
EXIT_STRICT = 8


def _fail(kind: str, message: str, code: int) -> int:
    print(f"monoquant: {kind}: {message}", file=sys.stderr)
    return code


def quantize_options(o: Dict[str, Any]) -> Dict[str, Any]:
    """The keyword arguments of ``monoquant.quantize`` for the CLI's options (without the data)."""
    import torch

    kw: Dict[str, Any] = {"bits": int(o["bits"]), "method": o.get("method") or "rtn"}
    mode = o.get("mode") or ""
    if mode:
        kw[mode] = True
    for key in ("scheme", "scale_method", "observer"):
        if o.get(key):
            kw[key] = o[key]
    if o.get("group_size"):
        kw["group_size"] = int(o["group_size"])
    if o.get("act_group_size"):
        kw["act_group_size"] = int(o["act_group_size"])
    if o.get("int4_range"):
        kw["int4_range"] = o["int4_range"]
    if o.get("dtype"):
        kw["dtype"] = {"f16": torch.float16, "bf16": torch.bfloat16}[o["dtype"]]
    if o.get("skip"):
        kw["skip"] = list(o["skip"])
    if o.get("only"):
        kw["include"] = list(o["only"])
    if o.get("act_order"):
        kw["act_order"] = True
    if o.get("smoothquant") is not None:
        kw["smoothquant"] = float(o["smoothquant"])
    if o.get("recipe"):
        with open(o["recipe"], encoding="utf-8") as f:
            try:
                kw["recipe"] = json.load(f)
            except json.JSONDecodeError as e:
                from .errors import FormatError
                raise FormatError(f"--recipe {o['recipe']}: not JSON ({e})") from None
    return kw


def run(o: Dict[str, Any]) -> int:
    import torch

    import monoquant as mq
    from .tokenized_data import tokenized_batches

    if o.get("threads"):
        torch.set_num_threads(int(o["threads"]))
    quiet = bool(o.get("quiet") or o.get("json"))
    batches = tokenized_batches(o["calibration_data"], int(o.get("calibration_batch_size") or 8),
                                int(o["calibration_samples"]) if o.get("calibration_samples") else None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = mq.quantize(o["model"], calibration_data=batches, show_progress=not quiet,
                                 **quantize_options(o))
    except mq.InvalidArgumentError as e:
        if "calibration batch" not in str(e):
            raise
        names = ", ".join(batches[0]) if batches else ""
        raise mq.InvalidArgumentError(f"--calibration-data {o['calibration_data']} (tensors {names}): {e}") from e
    except mq.MonoquantError:
        raise
    except (TypeError, ValueError, RuntimeError, IndexError) as e:
        # The model's own forward rejecting the batches (a tensor it takes no argument for, a
        # sequence longer than its positions, ...): bad input, said as the model said it.
        raise mq.InvalidArgumentError(f"running the model on --calibration-data {o['calibration_data']} failed: "
                                      f"{type(e).__name__}: {e}") from e
    # Warnings as the binary prints them (its own format, once each), not Python's.
    # Other libraries' warnings (transformers building the model, ...) keep theirs.
    here = os.path.dirname(os.path.abspath(__file__))
    seen = set()
    for w in caught:
        text = str(w.message)
        if os.path.dirname(os.path.abspath(w.filename)) != here:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif text not in seen and not (o.get("strict") and result.warnings):
            seen.add(text)
            print(f"monoquant: warning: {text}", file=sys.stderr)
    if o.get("strict") and result.warnings:
        for w in result.warnings:
            print(f"monoquant: warning: {w}", file=sys.stderr)
        print("monoquant: --strict: warnings are errors; nothing was written", file=sys.stderr)
        return EXIT_STRICT
    result.save(o["output"], max_shard_size=int(o["max_shard_size"]) if o.get("max_shard_size") else None)
    if o.get("json"):
        # The binary's top-level keys (totals, warnings, notes), with the API's rows: one per
        # layer ("layers") where the checkpoint pipeline has one per tensor ("tensors").
        out = dict(result.report.to_dict(), warnings=list(result.warnings), config=result.config)
        print(json.dumps(out, indent=2, default=str))
    elif not o.get("quiet"):
        print(result.report)
    return EXIT_OK


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        return _fail("usage", "python -m monoquant.cli_runner OPTIONS_JSON (run by `monoquant quantize`)", EXIT_USAGE)
    try:
        options = json.loads(args[0])
    except json.JSONDecodeError as e:
        return _fail("usage", f"the options are not JSON ({e})", EXIT_USAGE)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        return _fail("unsupported", f"running the model needs torch and transformers in this Python ({e})",
                     EXIT_UNSUPPORTED)
    from .errors import FormatError, InvalidArgumentError, MonoquantIOError, UnsupportedError
    try:
        return run(options)
    except InvalidArgumentError as e:
        return _fail("invalid argument", str(e), EXIT_INVALID)
    except FormatError as e:
        return _fail("format error", str(e), EXIT_FORMAT)
    except UnsupportedError as e:
        return _fail("unsupported", str(e), EXIT_UNSUPPORTED)
    except (MonoquantIOError, OSError) as e:
        return _fail("I/O error", str(e), EXIT_IO)
    except KeyboardInterrupt:
        return _fail("I/O error", "interrupted; nothing was written", EXIT_IO)


if __name__ == "__main__":
    sys.exit(main())
