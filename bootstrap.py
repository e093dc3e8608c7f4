"""Set up `.venv` and run the main job or the tests: the two commands of the README.

    python3.11 bootstrap.py main            # set up, then reproduce the figures (quick preset, 15.8 min measured on 2 cores)
    python3.11 bootstrap.py test            # set up, then run the test suite (what CI runs)
    python3.11 bootstrap.py test --slow     # ... including the tests marked slow
    python3.11 bootstrap.py test -- -k kernel   # anything after -- goes to pytest

Set-up is idempotent: it creates `.venv` with the standard `venv` module, installs PyTorch
(`torch==2.13.0`, the CPU build on a machine without a GPU; set SANDBOX_TORCH to another pip
requirement to override), then the project in editable mode with its `dev` and `notebooks` extras
(the test suite executes the teaching notebooks through a Jupyter kernel). A stamp in `.venv`
remembers what was installed, so a second run starts the job at once. Only the standard library is
used here, so a bare Python 3.11 suffices.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".bootstrap-stamp"
TORCH = os.environ.get("SANDBOX_TORCH", "torch==2.13.0")
# --jobs: the families whose runs are independent (three moons, variants) train them one process per core.
MAIN_JOB = ["-m", "sandbox", "figures", "all", "--preset", "quick", "--out", "figures/out", "--jobs", str(os.cpu_count() or 1)]


def say(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def run(cmd: list[str]) -> None:
    say(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT)


def setup() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"[bootstrap] Python >= 3.10 is required, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + TORCH.encode()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted:
        say(f"{VENV.name} is up to date")
        return
    if not PYTHON.exists():
        say(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    run(pip + [TORCH])
    run(pip + ["-e", ".[dev,notebooks]"])
    STAMP.write_text(wanted + "\n")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"main", "test", "setup"}:
        print(__doc__)
        return 2
    setup()
    if argv[0] == "setup":
        return 0
    env = dict(os.environ, MPLBACKEND="Agg")
    if argv[0] == "main":
        cmd = [PYTHON, *MAIN_JOB, *argv[1:]]
    else:
        extra = argv[1:]
        marks = []
        if "--slow" in extra:
            extra.remove("--slow")
            marks = ["-m", "slow or not slow"]
        if extra[:1] == ["--"]:
            extra = extra[1:]
        cmd = [PYTHON, "-m", "pytest", *marks, *extra]
    say(" ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
