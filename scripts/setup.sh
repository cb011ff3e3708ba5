#!/usr/bin/env bash
# One-shot set-up for a fresh machine: a virtual environment in .venv with the right torch build
# (CUDA where an NVIDIA GPU is visible, the CPU build elsewhere), then babelmerge with pinned deps.
#   bash scripts/setup.sh          # runtime
#   bash scripts/setup.sh --test   # runtime + test tools + ray (so the tests of --executor ray run)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
extra=""
[ "${1:-}" = "--test" ] && extra="[test,ray]"

PY=.venv/bin/python
# pip, quiet: only real problems reach the terminal. Machine-wide pip configurations that name an index
# folder that does not exist make pip warn "Location ... is ignored" on every call; that line is dropped.
pipq() {
  local log rc=0
  log="$(mktemp)"
  "$PY" -m pip -q --disable-pip-version-check "$@" 2>"$log" || rc=$?
  grep -v -E "^WARNING: Location .* is ignored" "$log" >&2 || true
  rm -f "$log"
  return "$rc"
}

echo "setup: virtual environment .venv (python: $(python3 --version 2>&1))"
python3 -m venv .venv
pipq install --upgrade pip

if $PY -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  echo "setup: torch $TORCH_VERSION already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found, installing the CUDA build of torch $TORCH_VERSION"
  pipq install "torch==$TORCH_VERSION"
else
  echo "setup: no GPU, installing the CPU build of torch $TORCH_VERSION"
  # A local CPU wheel (pip's find-links) is taken first; else PyTorch's CPU index. Never plain PyPI,
  # whose Linux wheel pulls gigabytes of CUDA libraries.
  pipq install "torch==$TORCH_VERSION+cpu" 2>/dev/null \
    || pipq install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
fi

echo "setup: babelmerge and its pinned dependencies (constraints.txt)${extra:+, with the test tools and ray}"
# setuptools warns about every editable install (a boxed note that folders named like the package can shadow it);
# that note is dropped, nothing else.
PYTHONWARNINGS="ignore:Editable installation" pipq install -c constraints.txt -e ".$extra"

# The browser tests drive Debian's Chromium (never a browser build downloaded by a tool).
if [ -n "$extra" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "setup: chromium is missing and this is not root; run 'sudo apt-get install chromium' for the browser tests" >&2
  fi
fi
if $PY -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
  command -v nvidia-smi >/dev/null 2>&1 || { echo "setup: CUDA packages were installed on a machine without a GPU" >&2; exit 1; }
fi
echo "setup: done ($($PY -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
