#!/usr/bin/env bash
# Installs what pdrop's build, tests, benchmarks and reference need, when it
# is missing:
#   1. Debian packages. Eigen is the library's only dependency; the rest is
#      for building and testing (CLI11 for the tools' command lines; DLPack
#      and OpenMPI for the optional DLPack views and the two-rank
#      tensor-parallel test; python3-venv for 2.). For scripts/test.sh's
#      aarch64 build (cmake/toolchains/aarch64-linux-gnu.cmake): the cross
#      compiler (g++-aarch64-linux-gnu, with the arm64 C library), qemu-user
#      to run what it builds (qemu-aarch64), and GoogleTest built for arm64,
#      which Debian ships through multiarch (libgtest-dev:arm64,
#      libgmock-dev:arm64: static libraries in /usr/lib/aarch64-linux-gnu,
#      the headers shared with the host's); so arm64 is added to dpkg's
#      architectures when one of them is missing.
#   2. The Python reference's packages (reference/requirements.txt, exact
#      pins: transformers, torch, ...) in a virtual environment, .venv/ at
#      the top of the tree (git ignores it; PDROP_VENV names another folder).
#      It is rebuilt when the requirements file changes.
# Needs root (or sudo) only when a Debian package is missing.
# PDROP_DEPS_PYTHON=0 skips 2.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ clang libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
          libcli11-dev libdlpack-dev libopenmpi-dev openmpi-bin python3 python3-venv
          g++-aarch64-linux-gnu qemu-user libgtest-dev:arm64 libgmock-dev:arm64)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "deps.sh: missing ${missing[*]}; run as root: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]}" == *:arm64* ]] && [ "$(dpkg --print-architecture)" != arm64 ] &&
     ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "deps.sh: dpkg --add-architecture arm64 (for the :arm64 packages)"
    "${sudo[@]}" dpkg --add-architecture arm64
  fi
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ "${PDROP_DEPS_PYTHON:-1}" = 0 ] && exit 0
venv=${PDROP_VENV:-.venv}
req=reference/requirements.txt
stamp="$venv/.pdrop-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp"; then
  exit 0
fi
echo "deps.sh: installing $req into $venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
