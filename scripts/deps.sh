#!/usr/bin/env bash
# Installs the Debian packages pdrop's build, tests and benchmarks need, when
# they are missing. Eigen is the library's only dependency; the rest is for
# building and testing (DLPack and OpenMPI for the optional DLPack views and
# the two-rank tensor-parallel test). Needs root (or sudo) only when
# something is missing.
set -euo pipefail

packages=(cmake g++ clang libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev
          libdlpack-dev libopenmpi-dev openmpi-bin)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

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
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
