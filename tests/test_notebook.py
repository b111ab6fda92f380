"""notebooks/quickstart.ipynb: stored without outputs, and runs top to bottom in a real kernel.

Running it takes a few minutes on two CPU cores (it compiles the shipped model, decodes two
files with the perceptual decoder too, evaluates one
Kodak image against JPEG, WebP and AVIF and trains five steps of the tiny model); it runs with
the rest of the suite, as the notebook would on Colab. Both tests carry the ``notebook`` marker
(``-m "not notebook"`` deselects them).
"""

import json
import pathlib
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"

pytestmark = pytest.mark.notebook


def test_the_notebook_is_stored_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert len(code) >= 6
    for cell in code:
        assert cell["outputs"] == [], "strip the outputs before committing the notebook"
        assert cell["execution_count"] is None
    source = "".join("".join(c["source"]) for c in code)
    assert 'REPO_URL = "' in source  # the Colab install cell's placeholder


def test_the_notebook_runs_and_shows_images():
    nbformat = pytest.importorskip("nbformat", reason="needs the [notebook] extra (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="needs the [notebook] extra (nbclient)")
    pytest.importorskip("ipykernel", reason="needs the [notebook] extra (ipykernel)")
    pytest.importorskip("matplotlib", reason="needs the [notebook] extra (matplotlib)")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # cwd: notebooks/
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - t0

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, f"expected at least two figures, got {len(images)}"
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "nothing to install" in text  # ran from the checkout, installed nothing
    assert text.count(" bpp, PSNR ") >= 3  # three lambdas, each a real file decoded
    # One file, two decoders: lambda 16 and 128, each decoded by the MSE and perceptual decoder.
    assert text.count("perceptual decoder: PSNR") == 2 and text.count("MSE decoder") >= 2
    assert len(images) >= 3, f"expected the two decoders' figure too, got {len(images)}"
    assert "jpeg420" in text and "webp" in text  # the RD comparison's table
    assert "trained 5 steps" in text and "the 5-step tiny model codes" in text
    print(f"notebook ran in {seconds:.0f} s")
