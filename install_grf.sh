#!/usr/bin/env bash
# The optional Google Research Football extra (env ids gfootball:<scenario>), on top of the core install, in the
# active virtualenv, on Debian or Ubuntu:
#
#     bash install_grf.sh
#
# gfootball 2.10.2 (its last release) ships no Linux wheel, so pip builds its C++ engine (about 10 minutes on
# 2 cores). Three things its own build does not do: it needs Debian's SDL, Boost and OpenGL headers; its build
# imports psutil outside pip's isolated build env (hence --no-build-isolation, with psutil, setuptools and wheel
# installed first); it runs on gym 0.25.2 with six (undeclared; gym 0.26 changed reset()). requirements-grf.txt
# pins what it imports; nothing of the core install changes.
set -euo pipefail
cd "$(dirname "$0")"

step() { echo "==> $*"; }
fail() { echo "install_grf.sh: $*" >&2; exit 1; }

[ -n "${VIRTUAL_ENV:-}" ] || fail "activate the project's virtualenv first (. .venv/bin/activate), then rerun"
python -c "import torch, numpy" 2>/dev/null || fail "install the core first: pip install -r requirements.txt"

packages=(git cmake build-essential libgl1-mesa-dev libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev
  libsdl2-gfx-dev libboost-python-dev libboost-thread-dev libboost-system-dev libboost-filesystem-dev
  libdirectfb-dev libst-dev mesa-utils python3-dev)
step "Debian build dependencies (${#packages[@]} packages)"
command -v apt-get > /dev/null || fail "no apt-get: this script is for Debian/Ubuntu; install the equivalents of: ${packages[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo > /dev/null || fail "installing Debian packages needs root or sudo: ${packages[*]}"
  sudo="sudo"
fi
$sudo apt-get update -qq || fail "apt-get update failed (network? package sources?)"
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${packages[@]}" > /dev/null \
  || fail "apt-get install failed for: ${packages[*]}"

step "build tools for gfootball's engine build (psutil, setuptools, wheel)"
python -m pip install --quiet -r requirements-grf-build.txt || fail "pip could not install requirements-grf-build.txt"

step "gfootball 2.10.2 and what it imports (the C++ engine build takes about 10 minutes on 2 cores)"
python -m pip install --quiet --no-build-isolation --no-deps -r requirements-grf.txt \
  || fail "pip install -r requirements-grf.txt failed; rerun with the same command and -v to see the engine build's log"

step "check: one step of academy_3_vs_1_with_keeper"
python - << 'EOF' || fail "gfootball is installed but does not run (see the error above)"
from common.envs import make_env

env = make_env("gfootball:academy_3_vs_1_with_keeper", seed=0)
obs, state, avail = env.reset()
env.step([0] * env.n_agents)
env.close()
print(f"gfootball works: {env.n_agents} agents, observations {obs.shape[1]}, {env.n_actions} actions")
EOF
