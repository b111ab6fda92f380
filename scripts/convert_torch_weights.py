"""Convert PyTorch VGG19 / LPIPS / DISTS weights to swinjax's local ``.npz`` weights files.

swinjax never downloads weights. Run this once, on a machine that has PyTorch and
the published files, and copy the ``.npz`` outputs to where training/evaluation can read them.
The format and where to get the inputs are in ``docs/weights.md``. Examples::

    python scripts/convert_torch_weights.py vgg19 --vgg vgg19-dcbb9e9d.pth --out vgg19.npz
    python scripts/convert_torch_weights.py lpips --vgg vgg16-397923af.pth \
        --lin lpips/weights/v0.1/vgg.pth --out lpips_vgg.npz
    python scripts/convert_torch_weights.py dists --vgg vgg16-397923af.pth \
        --heads DISTS_pytorch/weights.pt --out dists_vgg16.npz
    python scripts/convert_torch_weights.py dists-package --heads DISTS_pytorch-0.1-py3-none-any.whl

``dists-package`` is the one kind that needs no PyTorch: it reads DISTS' ``alpha``/``beta`` from
``DISTS_pytorch`` 0.1's ``weights.pt`` (the file, or the wheel that holds it, from
``pip download --no-deps DISTS_pytorch==0.1``) with a restricted reader of torch's legacy
serialization (:func:`read_legacy_torch`) and writes the package data that swinjax ships,
``swinjax/metric_weights/dists_alpha_beta.npz``.

Inputs are read with ``torch.load(..., weights_only=True)``, so **this script needs PyTorch**
(CPU build is enough), which is *not* a swinjax dependency: it is imported lazily, only to read
``.pth``/``.pt`` files. The conversion itself works on numpy arrays (the functions below), and
each output is checked by loading it with swinjax's own loader before the script reports success.

Accepted key layouts for the VGG convolutions (torchvision index ``i`` of the conv in
``vgg{16,19}().features``): ``features.{i}.weight`` (a whole torchvision model),
``{i}.weight`` (a ``features`` Sequential), ``net.slice{s}.{i}.weight`` (a whole ``lpips.LPIPS``
state dict), ``stage{s}.{i}.weight`` (a whole ``DISTS`` model). Weights are transposed from OIHW
to HWIO.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

if __package__ in (None, "") and __name__ == "__main__":  # run as a file from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The VGG layer table is shared with the loader so the two cannot disagree.
from swinjax.models.vgg import load_vgg, param_shapes, torchvision_feature_index  # noqa: E402
from swinjax.perceptual import dists_head_shapes, load_dists, load_lpips  # noqa: E402


def _np(v: Any) -> np.ndarray:
    """A float32 numpy copy of a numpy array or a torch tensor."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, np.float32)


def _find(state: Mapping[str, Any], index: int, leaf: str) -> str:
    """The key of ``features[index].{leaf}`` in any accepted layout (see module docstring)."""
    exact = (f"features.{index}.{leaf}", f"{index}.{leaf}")
    for key in exact:
        if key in state:
            return key
    pattern = re.compile(rf"^(net\.)?(slice|stage)\d+\.{index}\.{leaf}$")
    hits = [k for k in state if pattern.match(k)]
    if len(hits) == 1:
        return hits[0]
    raise KeyError(
        f"no VGG conv {leaf} at torchvision features index {index} (tried {list(exact)} and "
        f"{pattern.pattern}); keys look like {sorted(state)[:6]}"
    )


def vgg_from_torch(state: Mapping[str, Any], depth: int) -> dict[str, np.ndarray]:
    """``conv{b}_{i}/kernel`` (HWIO) and ``/bias`` arrays from a torchvision-layout state dict.

    The width is read from the first conv; every shape is then checked against the VGG table.
    """
    out: dict[str, np.ndarray] = {}
    for name, index in torchvision_feature_index(depth).items():
        w = _np(state[_find(state, index, "weight")])
        if w.ndim != 4:
            raise ValueError(f"{name}: torch weight must be OIHW, got shape {w.shape}")
        out[f"{name}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
        out[f"{name}/bias"] = _np(state[_find(state, index, "bias")])
    width = out["conv1_1/kernel"].shape[-1]
    for key, shape in param_shapes(depth, width).items():
        if out[key].shape != shape:
            raise ValueError(f"{key}: converted shape {out[key].shape}, expected {shape}")
    return out


def lpips_lin_from_torch(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``lin{k}/kernel`` ``(1, 1, C, 1)`` from the lpips package's ``lin{k}.model.*.weight``.

    The 1x1 conv is ``model.1`` when the package built it with dropout (its default) and
    ``model.0`` without.
    """
    out: dict[str, np.ndarray] = {}
    for k in range(5):
        keys = [f"lin{k}.model.1.weight", f"lin{k}.model.0.weight"]
        key = next((c for c in keys if c in state), None)
        if key is None:
            raise KeyError(f"no LPIPS lin layer {k} (tried {keys}); keys: {sorted(state)[:8]}")
        w = _np(state[key])  # (1, C, 1, 1) OIHW
        out[f"lin{k}/kernel"] = np.ascontiguousarray(w.transpose(2, 3, 1, 0))
    return out


def dists_heads_from_torch(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``alpha`` and ``beta`` ``(N,)`` from DISTS' ``weights.pt`` (stored ``(1, N, 1, 1)``)."""
    out = {}
    for k in ("alpha", "beta"):
        if k not in state:
            raise KeyError(f"no DISTS {k!r} in the heads file; keys: {sorted(state)[:8]}")
        out[k] = _np(state[k]).reshape(-1)
    return out


def torch_load(path: str) -> dict[str, Any]:
    """A ``.pth``/``.pt`` state dict as numpy arrays; needs PyTorch (imported here, lazily)."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise SystemExit(
            "reading .pth/.pt files needs PyTorch (CPU build is enough: "
            "`pip install torch --index-url https://download.pytorch.org/whl/cpu`); "
            "it is not a swinjax dependency"
        ) from e
    state = torch.load(path, map_location="cpu", weights_only=True)
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    return {k: _np(v) for k, v in state.items() if hasattr(v, "shape")}


# The globals a legacy torch file of plain float tensors names, and nothing else.
_TORCH_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64}


def read_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """A state dict of float tensors from torch's legacy (pre-zip) serialization, without torch.

    The legacy format is five pickles in a row (magic number, protocol version, system info, the
    object with tensors as persistent ids of their storages, the list of storage keys) and then
    each storage's raw bytes behind an 8-byte element count. Only the globals such a file of float
    tensors needs are admitted (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage`` /
    ``DoubleStorage``, ``collections.OrderedDict``), mapped to local stand-ins; anything else is
    refused, so no code from the file runs.
    """
    import collections
    import io
    import pickle

    class Storage:
        def __init__(self, dtype: Any, key: str, count: int) -> None:
            self.dtype, self.key, self.count, self.array = dtype, key, count, None

    def rebuild(storage: Storage, offset: int, size: tuple, stride: tuple, *_: Any) -> Any:
        return ("tensor", storage, int(offset), tuple(size), tuple(stride))

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in _TORCH_STORAGE_DTYPES:
                return _TORCH_STORAGE_DTYPES[name]
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"refusing {module}.{name} in a weights file")

        def persistent_load(self, pid: Any) -> Any:
            kind, dtype, key, _location, count = pid[:5]
            if kind != "storage" or dtype not in _TORCH_STORAGE_DTYPES.values():
                raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
            return storages.setdefault(key, Storage(dtype, key, int(count)))

    storages: dict[str, Storage] = {}
    f = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info: plain values
        Reader(f).load()
    obj = Reader(f).load()
    keys = Reader(f).load()
    for key in keys:
        st = storages[key]
        count = int(np.frombuffer(f.read(8), "<i8")[0])
        if count != st.count:
            raise ValueError(f"storage {key}: {count} elements, expected {st.count}")
        st.array = np.frombuffer(f.read(count * np.dtype(st.dtype).itemsize), st.dtype)
    out = {}
    for name, t in dict(obj).items():
        _, st, offset, size, stride = t
        item = np.dtype(st.dtype).itemsize
        view = np.lib.stride_tricks.as_strided(
            st.array[offset:], size, tuple(s * item for s in stride)
        )
        out[name] = np.array(view, np.float32)
    return out


def dists_package_heads(path: str) -> dict[str, np.ndarray]:
    """``alpha``/``beta`` ``(1475,)`` from DISTS_pytorch's ``weights.pt`` or its wheel."""
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            data = z.read("DISTS_pytorch/weights.pt")
    else:
        with open(path, "rb") as fh:
            data = fh.read()
    heads = dists_heads_from_torch(read_legacy_torch(data))
    want = dists_head_shapes(64)["alpha"]
    if heads["alpha"].shape != want or heads["beta"].shape != want:
        raise ValueError(f"DISTS alpha/beta have {heads['alpha'].shape}, expected {want}")
    return heads


def save_npz(arrays: Mapping[str, np.ndarray], out: str) -> None:
    """Writes ``arrays`` to ``out`` atomically (a crash never leaves a half-written file)."""
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=directory)
    os.close(fd)
    try:
        np.savez(tmp, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
        os.chmod(tmp, 0o644)  # mkstemp makes it private; weights are meant to be read
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert(kind: str, vgg: Mapping[str, Any], head: Mapping[str, Any] | None) -> dict:
    """The arrays of the ``kind`` file (``vgg19``, ``lpips`` or ``dists``) from state dicts."""
    if kind == "vgg19":
        return vgg_from_torch(vgg, 19)
    if head is None:
        raise ValueError(f"{kind} needs its head weights as well as the VGG16 weights")
    out = vgg_from_torch(vgg, 16)
    if kind == "lpips":
        out.update(lpips_lin_from_torch(head))
    elif kind == "dists":
        out.update(dists_heads_from_torch(head))
        width = out["conv1_1/kernel"].shape[-1]
        want = dists_head_shapes(width)["alpha"]
        if out["alpha"].shape != want:
            raise ValueError(f"DISTS alpha has {out['alpha'].shape}, expected {want}")
    else:
        raise ValueError(f"kind must be vgg19, lpips or dists, got {kind!r}")
    return out


def verify(kind: str, out: str) -> None:
    """Loads ``out`` with swinjax's loader (raises if anything is missing or mis-shaped)."""
    from swinjax.models.vgg import WeightsFormatError

    width = int(np.load(out)["conv1_1/kernel"].shape[-1])
    try:
        if kind == "vgg19":
            load_vgg(out, 19, width)
        elif kind == "lpips":
            load_lpips(out, width)
        else:
            load_dists(out, width)
    except WeightsFormatError as e:  # pragma: no cover - a bug in this script
        raise SystemExit(f"converted file does not load: {e}") from e


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("kind", choices=("vgg19", "lpips", "dists", "dists-package"))
    p.add_argument("--vgg", help="torchvision vgg19 (vgg19) or vgg16 weights")
    p.add_argument(
        "--lin", help="lpips: the package's weights/v0.1/vgg.pth (or a full LPIPS state dict)"
    )
    p.add_argument(
        "--heads",
        help="dists, dists-package: DISTS_pytorch's weights.pt (alpha, beta), or its wheel",
    )
    p.add_argument("--out", help="output .npz (dists-package: swinjax's package data)")
    a = p.parse_args(argv)
    if a.kind == "dists-package":
        from swinjax.packaged_weights import DISTS_FILE, dists_alpha_beta

        if not a.heads:
            p.error("dists-package needs --heads (weights.pt or the DISTS_pytorch wheel)")
        out = a.out or str(DISTS_FILE)
        save_npz(dists_package_heads(a.heads), out)
        dists_alpha_beta(out)  # loads as swinjax reads it
        print(f"wrote {out}: DISTS alpha and beta, 1475 float32 values each")
        return 0
    if not a.vgg or not a.out:
        p.error(f"{a.kind} needs --vgg and --out")
    head_path = {"vgg19": None, "lpips": a.lin, "dists": a.heads}[a.kind]
    if a.kind != "vgg19" and not head_path:
        p.error(f"{a.kind} needs {'--lin' if a.kind == 'lpips' else '--heads'}")
    vgg = torch_load(a.vgg)
    head = torch_load(head_path) if head_path else None
    arrays = convert(a.kind, vgg, head)
    save_npz(arrays, a.out)
    verify(a.kind, a.out)
    n = sum(int(v.size) for v in arrays.values())
    print(f"wrote {a.out}: {a.kind}, {len(arrays)} arrays, {n:,} float32 values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
