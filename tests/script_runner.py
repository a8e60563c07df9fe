"""Run a training script the way a user does (a subprocess from a working directory) and read
what it reports."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_script(script: str, cwd: Path, *flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / f"{script}.py"), *flags]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def final_returns(result: subprocess.CompletedProcess) -> tuple[float, float]:
    """The closing summary line: '... CADP(C) return X, CADP(D) return Y'."""
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"CADP\(C\) return (-?[\d.]+), CADP\(D\) return (-?[\d.]+)", result.stdout)
    assert match, result.stdout[-2000:]
    return float(match.group(1)), float(match.group(2))
