#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang and runs each for N seconds.
#
#   bash scripts/fuzz.sh [seconds per target, default 60] [targets...]
#   targets: safetensors zip unpickler pt (default: all)
#
# Needs clang and libclang-rt-14-dev (Debian 12): apt-get install clang libclang-rt-14-dev
# Corpora live in build/fuzz/corpus/<target> (seeded from files written by
# torch.save / safetensors when .venv exists); crashes go to build/fuzz/crashes/.
# Exits non-zero if any target finds a crash.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors zip unpickler pt)
BUILD=${MONOQUANT_FUZZ_BUILD_DIR:-build/fuzz}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-14-dev)" >&2; exit 2; }
GENERATOR=Ninja
command -v ninja >/dev/null || GENERATOR="Unix Makefiles"
[ -f "$BUILD/CMakeCache.txt" ] && GENERATOR=$(sed -n 's/^CMAKE_GENERATOR:INTERNAL=//p' "$BUILD/CMakeCache.txt")
CXX=clang++ cmake -S . -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMONOQUANT_BUILD_FUZZ=ON \
  -DMONOQUANT_BUILD_TESTS=OFF -DMONOQUANT_BUILD_BENCH=OFF >/dev/null || exit 2
cmake --build "$BUILD" -j "${MONOQUANT_FUZZ_JOBS:-1}" $(printf -- '--target fuzz_%s ' "${TARGETS[@]}") || exit 2

mkdir -p "$BUILD/crashes"
if [ -x .venv/bin/python ] && [ ! -f "$BUILD/corpus/.seeded" ]; then
  .venv/bin/python - "$BUILD/corpus" <<'PY'
import os, pickle, sys, zipfile, io
import torch
from safetensors.torch import save
root = sys.argv[1]
for t in ("safetensors", "zip", "unpickler", "pt"):
    os.makedirs(os.path.join(root, t), exist_ok=True)
def put(t, name, data):
    open(os.path.join(root, t, name), "wb").write(data)
sd = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int8), "h": torch.ones(2, dtype=torch.bfloat16)}
put("safetensors", "small", save(sd, metadata={"format": "pt"}))
put("safetensors", "fp8", save({"f": torch.zeros(3, dtype=torch.float8_e4m3fn), "u": torch.zeros(2, dtype=torch.uint16)}))
for i, obj in enumerate([sd, {"model": sd, "epoch": 3}, {"v": sd["w"][:, 1:], "p": torch.nn.Parameter(torch.ones(2))},
                         {"f8": torch.zeros(2, dtype=torch.float8_e5m2)}]):
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    put("pt", f"ckpt{i}", data)
    put("zip", f"ckpt{i}", data)
    z = zipfile.ZipFile(io.BytesIO(data))
    put("unpickler", f"pkl{i}", z.read([n for n in z.namelist() if n.endswith("data.pkl")][0]))
put("unpickler", "plain", pickle.dumps({"a": [1, 2.5, "x", None, True, (1, 2)]}, protocol=2))
PY
  touch "$BUILD/corpus/.seeded"
fi
rc=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$BUILD/corpus/$t"
  echo "== fuzz_$t for ${SECONDS_PER_TARGET}s"
  log="$BUILD/fuzz_$t.log"
  "$BUILD/fuzz/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$BUILD/crashes/${t}-" -print_final_stats=1 "$BUILD/corpus/$t" >"$log" 2>&1
  status=$?
  grep -E "^#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|ERROR|SUMMARY|Test unit written" "$log"
  if [ $status -ne 0 ]; then
    echo "fuzz_$t FAILED (exit $status); log: $log" >&2
    rc=1
  fi
done
exit $rc
