"""scripts/device_train.py end to end on the CPU: pack, train --quick, load, compress, decode."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from swinjax.checkpoint import load_model
from swinjax.compression import ImageCodec

ROOT = pathlib.Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("device_train", ROOT / "scripts/device_train.py")
device_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(device_train)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:96, 0:120] / 96.0
    for sub, n in (("train", 6), ("val", 3)):
        (root / sub).mkdir()
        for i in range(n):
            base = np.stack([np.sin(4 * xx + i), np.cos(3 * yy - i), np.sin(xx * yy * 6)], -1)
            img = (0.5 + 0.4 * base + 0.03 * rng.standard_normal(base.shape)).clip(0, 1)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / sub / f"p{i}.png")
    return root


def test_quick_mode_comes_back_as_an_export_that_codes_an_image(photos, tiny_export, tmp_path):
    data, out = tmp_path / "carry", tmp_path / "OUT"
    argv = ["pack", "--to", str(data), "--train-dirs", str(photos / "train"),
            "--val-dirs", str(photos / "val"), "--max-mb", "1", "--no-wheels"]  # fmt: skip
    assert device_train.main(argv) == 0
    assert len(list((data / "train").iterdir())) == 6 and len(list((data / "val").iterdir())) == 3
    # A budget spent at the first log (step 2): it must stop there, not at the 40 scheduled.
    argv = ["train", "--quick", "--data", str(data), "--out", str(out), "--init",
            str(tiny_export), "--steps", "40", "--budget-s", "1e-9"]  # fmt: skip
    assert device_train.main(argv) == 0
    files = sorted(p.name for p in out.iterdir())
    assert {"train.log", "metrics.jsonl", "manifest.json"} <= set(files)
    assert len(files) <= device_train.MAX_FILES
    assert all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == 2 and "val_psnr_db" in manifest["validation"]
    assert "stopping at step 2 of 40" in (out / "train.log").read_text()

    exp = load_model(device_train.load(out, tmp_path / "export"))
    assert exp.step == 2 and exp.model_id == "swincoder-tiny"
    hist = json.loads((tmp_path / "export" / "model.json").read_text())["history"]
    assert hist["runs"][-1]["steps"] == 2 and hist["runs"][-1]["device"].startswith("cpu")
    img = np.asarray(Image.open(photos / "val" / "p0.png"))
    codec = ImageCodec(exp)
    x = codec.decompress(codec.compress(img, 64.0))
    assert x.shape == img.shape and x.dtype == np.uint8


def test_a_corrupted_part_is_refused(photos, tmp_path):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "export.tar.part00").write_bytes(b"not a tar")
    manifest = {"parts": ["export.tar.part00"], "sha256": "0" * 64, "bytes": 9}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="sha256"):
        device_train.load(out, tmp_path / "export")
    manifest["parts"].append("export.tar.part01")
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="missing export.tar.part01"):
        device_train.load(out, tmp_path / "export")
