"""scripts/device_check.py in its quick mode: every check runs (on the CPU) and reports."""

import importlib.util
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load_script():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "scripts/device_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _load_script()


def test_quick_mode_runs_every_check_and_prints_one_table(script, tiny_export, tmp_path, capsys):
    out = tmp_path / "rows.json"
    # In-process: the tiny export's compiled codec is shared with the other tests.
    status = script.main(["--quick", "--ckpt", str(tiny_export), "--json", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    rows = json.loads(out.read_text())["rows"]
    checks = [r["check"] for r in rows]
    assert checks == [
        "matmul",
        "matmul",
        "train step",
        "compress",
        "decompress",
        "decode elsewhere",
    ], text
    assert all(r["ok"] for r in rows)
    step = rows[2]
    assert step["dtype"] == "bfloat16" and step["values"]["images_per_s"] > 0
    assert step["values"]["flops"] > 0  # XLA's cost analysis reached the MFU column
    decode = rows[-1]
    assert decode["result"] == "decoded"
    # Plain-JAX encoder, CPU-kernel decoder: the symbols agree, the synthesis may round apart.
    assert decode["values"]["max_pixel_diff"] <= 2
    table = text[text.index("| check |") :].splitlines()
    assert len(table) == 2 + len(rows)


@pytest.mark.parametrize(
    "kind, name, bf16",
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM", 989.0),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", "NVIDIA H200 SXM", 989.0),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100", 312.0),
        ("TPU v5 lite", "TPU v5e", 197.0),
        ("TPU v5p", "TPU v5p", 459.0),
        ("TPU v4", "TPU v4", 275.0),
    ],
)
def test_peak_table_matches_device_kinds_most_specific_first(script, kind, name, bf16):
    found, peaks = script.peak_tflops(kind)
    assert found == name and peaks["bfloat16"] == bf16
    assert 0 < peaks["float32"] <= peaks["bfloat16"]


def test_an_unknown_device_has_no_peak(script):
    assert script.peak_tflops("cpu") is None


def test_a_failing_check_becomes_a_failed_row_and_the_budget_skips_the_rest(script, capsys):
    import argparse

    checker = script.Checker(argparse.Namespace(quick=True, budget_s=1e9, ckpt=""))

    def boom():
        raise RuntimeError("out of memory")

    checker.run("train step", "x", "float32", boom)
    checker.args.budget_s = -1.0
    checker.run("train step", "y", "float32", boom)
    first, second = checker.rows
    assert not first.ok and "out of memory" in first.result
    assert second.ok and "skipped" in second.result
