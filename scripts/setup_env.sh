#!/usr/bin/env bash
# Creates .venv in the repository with the pinned lumen_mm stack.
#
# Idempotent: a stamp holding the hash of this script and the requirement
# files short-cuts a second run. Workarounds (measured, ../shared/ENVIRONMENT.md):
#  * mmcv 2.1.0 ships only a source archive on PyPI. Its setup.py imports
#    pkg_resources (gone from setuptools >= 81) and forces -std=c++14/17, while
#    torch 2.14's headers need C++20. We build it from the archive with
#    setuptools < 70, the flags raised to c++20, and keep the wheel under
#    ~/.cache/lumen_mm so that later set-ups (CI on this machine) reuse it.
#  * mmpose 1.3.2 requires chumpy, which does not build; nothing imports it.
#    mmpose is installed with --no-deps plus its real requirements.
#  * The xtcocotools wheel is built against numpy 1.x and fails to import with
#    numpy 2.x; it is built from source.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${LUMEN_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
CACHE=${LUMEN_CACHE:-$HOME/.cache/lumen_mm}
MMCV_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f

# Headless Chromium for the browser demo's test (tests/test_webui.py drives
# tools/webui.py with selenium): Debian's chromium and its matching
# chromium-driver, a system package, so checked before the venv's stamp.
# Skipped when both are present; apt-get update only when apt does not know
# the packages yet. Without root or apt the test skips and says why.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium and chromium-driver"
    apt-cache show chromium-driver >/dev/null 2>&1 || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "[setup] chromium/chromedriver absent and no root apt-get: tests/test_webui.py's browser tests will skip"
  fi
fi

stamp_value=$(cat "$0" requirements/*.txt setup.py | sha256sum | cut -c1-16)
if [ -f "$VENV/.lumen_stamp" ] && [ "$(cat "$VENV/.lumen_stamp")" = "$stamp_value" ]; then
  echo "[setup] environment up to date: $VENV"
  exit 0
fi

t0=$(date +%s)
step() { echo "[setup +$(( $(date +%s) - t0 ))s] $*"; }

[ -x "$VENV/bin/python" ] || { step "creating $VENV"; "$PY" -m venv "$VENV"; }
# pip warns about every package that this machine's local extra indexes lack.
PIP() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }; }

step "torch, build tools"
PIP install -q torch==2.14.1 torchvision==0.29.1 wheel ninja Cython "numpy>=2,<2.5"

mmcv_wheel=$(ls "$CACHE"/wheels/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)
if ! "$VENV/bin/python" -c "import mmcv.ops" 2>/dev/null; then
  if [ -z "$mmcv_wheel" ]; then
    step "building mmcv 2.1.0 with ops (about 15 minutes on 2 cores, once per machine)"
    # mmcv's setup.py imports pkg_resources; only an old setuptools builds it
    # (requirements/runtime.txt then restores the one torch asks for).
    PIP install -q "setuptools<70"
    work=$(mktemp -d)
    # By name through pip, so any configured index or mirror serves it; pip
    # checks the archive's hash. --no-build-isolation: its metadata step
    # imports pkg_resources, which only the setuptools above still has.
    echo "mmcv==2.1.0 --hash=sha256:$MMCV_SHA256" > "$work/mmcv.txt"
    PIP download -q --no-binary :all: --no-deps --no-build-isolation --require-hashes \
      -r "$work/mmcv.txt" -d "$work"
    tar -xzf "$work/mmcv-2.1.0.tar.gz" -C "$work"
    sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$work/mmcv-2.1.0/setup.py"
    mkdir -p "$CACHE/wheels"
    (cd "$work/mmcv-2.1.0" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      PIP wheel -q --no-build-isolation --no-deps -w "$CACHE/wheels" .)
    rm -rf "$work"
    mmcv_wheel=$(ls "$CACHE"/wheels/mmcv-2.1.0-*.whl | head -n1)
  fi
  step "installing $mmcv_wheel"
  PIP install -q --no-deps "$mmcv_wheel"
  PIP install -q addict mmengine==0.10.7 yapf packaging
fi

step "runtime requirements"
PIP install -q -r requirements/runtime.txt -r requirements/tests.txt "numpy>=2,<2.5"
PIP install -q --no-deps mmpose==1.3.2
if ! "$VENV/bin/python" -c "import xtcocotools.coco" 2>/dev/null; then
  step "xtcocotools from source (numpy 2 ABI)"
  PIP install -q --no-binary xtcocotools --no-build-isolation --no-deps --force-reinstall xtcocotools==1.14.3
fi
step "lumen_mm (editable)"
PIP install -q --no-build-isolation --no-deps -e .

"$VENV/bin/python" -c "import lumen_mm, mmcv.ops, mmdet.models, mmpose.evaluation, transformers, peft, segment_anything, xtcocotools.coco"
echo "$stamp_value" > "$VENV/.lumen_stamp"
step "done: $VENV"
