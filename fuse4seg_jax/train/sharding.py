"""Device mesh, batch and parameter shardings (``jax.jit`` with shardings; no ``pmap``).

One mesh with a ``data`` axis (and a ``model`` axis kept for future tensor parallelism). Batches are
split along ``data`` with global-batch semantics: losses are means over the global batch, so the
numbers do not depend on the device count. Parameters and optimiser state are replicated, or, with
``shard_params``, sharded FSDP-style over ``data`` by a simple rule (below). XLA inserts the
collectives; no step ever leaves the devices.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from fuse4seg_jax.errors import ConfigError

DATA = "data"
MODEL = "model"


def make_mesh(data: int = -1, model: int = 1) -> Mesh:
    """A ``(data, model)`` mesh over the global devices; ``data = -1`` takes all that ``model`` leaves."""
    count = jax.device_count()
    if model < 1 or count % model:
        raise ConfigError(f"mesh.model = {model} does not divide the {count} devices")
    data = count // model if data == -1 else data
    if data < 1 or data * model > count:
        raise ConfigError(f"mesh.data = {data} x mesh.model = {model} needs more than {count} devices")
    # Auto axes: XLA's sharding propagation places intermediates (recent JAX defaults to
    # Explicit axes, which would make every model reshape spell out its output sharding).
    return jax.make_mesh(
        (data, model),
        (DATA, MODEL),
        devices=jax.devices()[: data * model],
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
    )


def batch_sharding(mesh: Mesh, leading: int = 0) -> NamedSharding:
    """Sharding of a batch array whose axis ``leading`` is the example axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading), DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def fsdp_spec(shape: tuple[int, ...], data_size: int, min_size: int = 2**14) -> PartitionSpec:
    """Shard a parameter's largest axis divisible by the data-axis size; small ones stay replicated.

    Arrays under ``min_size`` elements are replicated: sharding them saves little memory and costs
    an all-gather each step.
    """
    if data_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
        if shape[axis] % data_size == 0:
            return PartitionSpec(*([None] * axis), DATA)
    return PartitionSpec()


def state_shardings(mesh: Mesh, state: Any, shard_params: bool) -> Any:
    """Shardings for a train-state pytree: replicated, or FSDP-style with :func:`fsdp_spec`."""
    if not shard_params:
        return jax.tree.map(lambda _: replicated(mesh), state)
    size = mesh.shape[DATA]
    return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), size)), state)


def put_batch(mesh: Mesh, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Place a host batch on the mesh, split along ``data``.

    ``batch`` holds this process's rows (all rows on a single host). Uses
    ``jax.make_array_from_process_local_data`` so the same code serves one and several hosts. The
    per-process row count must divide evenly over this process's devices on the ``data`` axis.
    """
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.dtype.kind in "US":  # strings (case ids) stay on the host
            continue
        sharding = batch_sharding(mesh)
        if (value.shape[0] * jax.process_count()) % mesh.shape[DATA]:
            raise ConfigError(
                f"batch key {key!r} has {value.shape[0] * jax.process_count()} rows, not divisible by the "
                f"{mesh.shape[DATA]} devices of the data axis: change batch sizes or mesh.data"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def process_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """This process's contiguous share of a global host batch (every process samples the same one)."""
    n, i = jax.process_count(), jax.process_index()
    return {k: np.asarray(v)[i * (len(v) // n) : (i + 1) * (len(v) // n)] for k, v in batch.items()}
