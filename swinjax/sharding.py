"""Device meshes and sharding rules: the only place where mesh axes are named.

The mesh has two axes: ``data`` (pure data parallelism) and ``fsdp`` (data parallelism whose
parameters and optimizer state are also sharded, ZeRO-3 style). Batches are split over both axes;
each parameter is split along ``fsdp`` on its largest dimension divisible by the axis size, and
replicated otherwise. XLA inserts the all-gathers and reduce-scatters.

Nothing here depends on the number of devices except the placement: the global batch, the data
order and every random draw are the same on one CPU and on a pod (random numbers are drawn for the
global shape with partitionable threefry).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA, FSDP = "data", "fsdp"
BATCH_AXES = (DATA, FSDP)


def make_mesh(data: int = -1, fsdp: int = 1, devices: Any = None) -> jax.sharding.Mesh:
    """A ``(data, fsdp)`` mesh over all (or the given) devices.

    Args:
        data: size of the data axis; -1 takes every device not used by ``fsdp``.
        fsdp: size of the fsdp axis.
        devices: devices to use (default: all, across processes).

    Raises:
        ValueError: when the sizes do not multiply to the device count.
    """
    devices = jax.devices() if devices is None else devices
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"mesh.fsdp={fsdp} does not divide the {n} available devices")
    if data == -1:
        data = n // fsdp
    if data * fsdp != n:
        raise ValueError(
            f"mesh.data * mesh.fsdp = {data} * {fsdp} = {data * fsdp}, but {n} devices are "
            "available (use mesh.data=-1 to take all devices)"
        )
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((data, fsdp), BATCH_AXES, axis_types=(auto, auto), devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data`` and ``fsdp``."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Fully replicated."""
    return NamedSharding(mesh, P())


def param_spec(shape: tuple[int, ...], fsdp: int, min_size: int = 2**14) -> P:
    """The rule for one parameter: shard its largest ``fsdp``-divisible dim, if big enough."""
    if fsdp == 1 or int(np.prod(shape)) < min_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if shape[dim] % fsdp == 0:
            spec: list[Any] = [None] * len(shape)
            spec[dim] = FSDP
            return P(*spec)
    return P()


def tree_shardings(mesh: jax.sharding.Mesh, abstract_tree: Any) -> Any:
    """Shardings for a pytree of arrays/ShapeDtypeStructs by :func:`param_spec`."""
    fsdp = mesh.shape[FSDP]

    def rule(x: Any) -> NamedSharding:
        shape = tuple(getattr(x, "shape", ()))
        return NamedSharding(mesh, param_spec(shape, fsdp))

    return jax.tree.map(rule, abstract_tree)


def global_batch_array(mesh: jax.sharding.Mesh, local: np.ndarray) -> jax.Array:
    """Builds the global batch from this process's rows (multi-host aware)."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local)
