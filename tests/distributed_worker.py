"""One process of the two-process test in test_scale.py (run as a script, not collected).

    python tests/distributed_worker.py PROCESS_ID PORT OUT_JSON [overrides...]

Joins a 2-process ``jax.distributed`` job on loopback (2 CPU devices each), takes two bi-level
steps of the tiny pipeline with each process feeding only its own rows of every batch, and writes
a checksum of the resulting parameters.
"""

import json
import os
import sys

os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_NUM_CPU_DEVICES"] = "2"  # the test session's 8 would otherwise be inherited

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main() -> None:
    process_id, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    from fuse4seg_jax import data
    from fuse4seg_jax.train.config import load_config
    from fuse4seg_jax.train.loop import ensure_dataset
    from fuse4seg_jax.train.sharding import make_mesh, process_rows, put_batch
    from fuse4seg_jax.train.trainer import Trainer

    config = load_config("configs/smoke.py", sys.argv[4:])
    src = data.open_split(ensure_dataset(config), "train")
    mesh = make_mesh(-1)
    trainer = Trainer(config, mesh, num_modalities=len(src.modalities))
    state = trainer.init_state()
    for step in range(2):
        tr, val = data.patient_split_batch(src, 8, 8, seed=0, step=step)
        tr, val = (put_batch(mesh, process_rows(b)) for b in (tr, val))
        state, _ = trainer.steps["bilevel"](state, tr, val)
    leader = jax.tree.map(
        lambda x: np.asarray(jax.experimental.multihost_utils.process_allgather(x, tiled=True)),
        state["leader"],
    )
    checksum = float(sum(np.abs(x).sum() for x in jax.tree.leaves(leader)))
    with open(out, "w") as f:
        json.dump(
            {"process_count": jax.process_count(), "devices": jax.device_count(), "checksum": checksum}, f
        )


if __name__ == "__main__":
    main()
