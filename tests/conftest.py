"""What the test modules share: the scripts, the flags that keep their runs tiny, the default LBF id,
the subprocess runners (a script run the way a user runs it) and an agent builder."""

import dataclasses
import importlib
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ["cadp_qmix", "cadp_vdn", "cadp_qplex", "cadp_mappo"]
MODULES = {name: importlib.import_module(name) for name in SCRIPTS}
LBF_ID = "lbforaging:Foraging-8x8-2p-3f-v3"  # the scripts' default env
# flags that keep each script's run tiny; the values are not tuned, only small
TINY = {
    "cadp_qmix": ["--batch-size", "2", "--buffer-size", "64"],
    "cadp_vdn": ["--batch-size", "2", "--buffer-size", "64"],
    "cadp_qplex": ["--batch-size", "2", "--buffer-size", "64"],
    "cadp_mappo": ["--num-steps", "10"],
}


def run_script(script: str, cwd: Path, *flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python script.py flags` from `cwd`, to its end."""
    command = [sys.executable, str(ROOT / f"{script}.py"), *flags]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_script(script: str, cwd: Path, *flags: str, env: dict | None = None) -> subprocess.Popen:
    """`python script.py flags` from `cwd`, in the background; its output goes to cwd/stdout.txt, stderr.txt."""
    cwd.mkdir(parents=True, exist_ok=True)
    out, err = open(cwd / "stdout.txt", "w"), open(cwd / "stderr.txt", "w")
    return subprocess.Popen(
        [sys.executable, str(ROOT / f"{script}.py"), *flags], cwd=cwd, stdout=out, stderr=err, env=env, text=True
    )


def final_returns(result: subprocess.CompletedProcess) -> tuple[float, float]:
    """The closing summary line: '... CADP(C) return X, CADP(D) return Y'."""
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"CADP\(C\) return (-?[\d.]+), CADP\(D\) return (-?[\d.]+)", result.stdout)
    assert match, result.stdout[-2000:]
    return float(match.group(1)), float(match.group(2))


def make_agent(module, obs_dim=7, n_actions=4, seed=0, **overrides):
    """A small CADPAgent of a script's module, seeded."""
    torch.manual_seed(seed)
    args = dataclasses.replace(module.Args(), hidden_dim=16, att_heads=2, att_embed_dim=8, **overrides)
    return module.CADPAgent(obs_dim, n_actions, args)
