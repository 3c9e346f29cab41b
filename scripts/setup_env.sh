#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install everything
# latentworld needs, including the Debian GL libraries for headless MuJoCo rendering.
# Idempotent: a second run only checks. Source-able: exports MUJOCO_GL and activates .venv.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"

# Headless rendering through EGL (Mesa's software/llvmpipe driver on a CPU-only machine):
# it needs no X server, and is faster than OSMesa, which also prints an atexit error.
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"

python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
  echo "[setup] ERROR: latentworld needs Python >= 3.10; found $(python3 --version 2>&1)" >&2; exit 1; }

gl_packages=(libegl1 libegl-mesa0 libgl1-mesa-dri)
# A C++ compiler and ninja build the fused Kalman kernels on first use (several times faster training
# on the CPU); without them the smoother runs its eager torch form, so they are not required.
build_packages=(g++ ninja-build)
not_installed() {  # prints those of the named Debian packages that are not installed
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}
mapfile -t missing < <(not_installed "${gl_packages[@]}")
mapfile -t missing_build < <(not_installed "${build_packages[@]}")
if [ "${#missing[@]}" -gt 0 ] || [ "${#missing_build[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "[setup] installing Debian packages: ${missing[*]} ${missing_build[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" "${missing_build[@]}" >/dev/null
  elif [ "${#missing[@]}" -gt 0 ]; then
    echo "[setup] ERROR: headless MuJoCo rendering needs these Debian packages: ${missing[*]}" >&2
    echo "[setup] ask an administrator to run: sudo apt-get install -y ${missing[*]} ${missing_build[*]}" >&2
    exit 1
  else
    echo "[setup] note: without ${missing_build[*]} the Kalman smoother runs its slower eager form;" \
      "an administrator can run: sudo apt-get install -y ${missing_build[*]}" >&2
  fi
fi

stamp="$venv/.latentworld-installed"
if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment $venv"
  python3 -m venv "$venv" || {
    rm -rf "$venv"
    echo "[setup] ERROR: python3 -m venv failed; on Debian install it with: apt-get install -y python3-venv" >&2
    exit 1; }
fi
# Reinstall only when the dependency list changed since the last install.
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  echo "[setup] installing latentworld and its dependencies (torch CPU build) into $venv"
  # This machine's pip config names local package folders; keep their "ignored" notices out.
  pip_install() { "$venv/bin/python" -m pip install -q "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }
  pip_install --upgrade pip
  # torch first, pinned and CPU-only, so no other package pulls a multi-GB CUDA build: a local
  # CPU wheel if pip is configured with one (find-links), else PyTorch's CPU package index.
  if "$venv/bin/python" -m pip install -q --dry-run --no-index --no-deps "torch==2.13.0" >/dev/null 2>&1; then
    pip_install "torch==2.13.0"
  else
    pip_install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
  fi
  pip_install -e "$repo[dev]"
  touch "$stamp"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
