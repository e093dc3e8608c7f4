#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA where torch is installed for `python3` and nothing
# can be installed. Run from the repository root:
#
#     OUT=/some/dir PYTHONPATH=. bash bench/device_check.sh
#
# Everything it writes goes under $OUT (default: bench/results/device): the log of each step, the
# CUDA tests' report, and the throughput benchmark's JSON (float32 with the per-operator profile; then
# bfloat16 autocast with the torch.compile measurement). Each step has its own time limit so the whole
# check ends within 6 minutes (at most 45 + 75 + 100 + 120 s, plus 10 s per step to stop); a step that fails or runs out of time does not stop the next.
set -u
OUT="${OUT:-bench/results/device}"
mkdir -p "$OUT"
export PYTHONPATH="${PYTHONPATH:-.}"
PY="${PYTHON:-python3}"
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, remember failures
  local name="$1" limit="$2"; shift 2
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}

# 1. What is here: python, torch, CUDA, and the project's other dependencies.
step preflight 45 "$PY" - <<'EOF'
import importlib, platform, sys
import torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "| CUDA", torch.version.cuda, "| bf16", torch.cuda.is_bf16_supported())
missing = []
for name in ("numpy", "scipy", "tqdm", "matplotlib", "pytest", "hypothesis"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        missing.append(name)
print("missing:", ", ".join(missing) or "nothing")
sys.exit(0 if torch.cuda.is_available() else 1)
EOF
if [ "$status" -ne 0 ]; then
  echo "no CUDA device (see $OUT/preflight.log): nothing to check here"
  exit 1
fi

# tqdm only draws progress bars: stand in for it where it is missing (numpy is required).
if ! "$PY" -c "import tqdm" 2>/dev/null; then
  mkdir -p "$OUT/shim/tqdm"
  printf 'from .auto import tqdm\n' > "$OUT/shim/tqdm/__init__.py"
  cat > "$OUT/shim/tqdm/auto.py" <<'EOF'
class tqdm:  # minimal stand-in: iterate, ignore the display
    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable = iterable
    def __iter__(self):
        return iter(self.iterable)
    def update(self, *args, **kwargs): pass
    def set_postfix(self, *args, **kwargs): pass
    def close(self): pass
EOF
  export PYTHONPATH="$PYTHONPATH:$OUT/shim"
  echo "tqdm missing: using a stand-in from $OUT/shim"
fi

# 2. The CUDA tests (device=auto, amp, CPU agreement) and the training engine's tests on CUDA.
if "$PY" -c "import pytest" 2>/dev/null; then
  step cuda_tests 75 "$PY" -m pytest -p no:cacheprovider -q -rs -o addopts="" \
      tests/test_device.py tests/test_train.py --junitxml="$OUT/cuda_tests.xml"
else
  # No pytest: call the test functions directly (they need only a temporary directory and monkeypatch).
  step cuda_tests 75 "$PY" bench/run_tests_plainly.py tests/test_device.py
fi

# 3. Throughput on CUDA in float32 with the per-operator profile (device time), no compilation.
step throughput_fp32 100 "$PY" -m bench.throughput --no-compile --results-dir "$OUT"

# 4. The same with bfloat16 autocast, and torch.compile against eager (compile time apart).
mkdir -p "$OUT/amp"
step throughput_amp_compile 120 "$PY" -m bench.throughput --amp --no-profile --no-memory --results-dir "$OUT/amp"

ls -l "$OUT" "$OUT/amp"
exit $status
