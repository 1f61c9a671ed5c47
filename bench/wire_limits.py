"""What the wire limits cost the decoder: ``shared.codec.decode`` (with the limits of
``shared/limits.py``: the node counter hooks and the depth/key walk) against a baseline measured in
the same run, ``msgpack.unpackb`` with the same array ext hook and nothing else.

``python -m bench.wire_limits`` prints microseconds per decode and the ratio, for the bodies the
system sends: an actor's columnar insert, the items form of the same batch, a sample answer.
"""

from __future__ import annotations

import os
import timeit

import msgpack
import numpy as np

from shared import codec


def bodies(n: int = 64, batch: int = 256) -> dict[str, bytes]:
    obs = np.zeros((n, 4), np.float32)
    columns = {
        "observation": obs,
        "action": np.zeros(n, np.int32),
        "reward": np.zeros(n, np.float32),
        "discount": np.ones(n, np.float32),
        "next_observation": obs,
    }
    item = {k: v[0] for k, v in columns.items()}
    sample = {
        "keys": list(range(batch)),
        "probabilities": [0.1] * batch,
        "priorities": [1.0] * batch,
        "times_sampled": [1] * batch,
        "table_size": 1000,
        "data": {k: np.repeat(v[:1], batch, axis=0) for k, v in columns.items()},
    }
    return {
        f"insert, columns ({n} items)": codec.encode(
            {"columns": columns, "priorities": np.ones(n)}
        ),
        f"insert, items ({n} items)": codec.encode(
            {"items": [{"data": item, "priority": 1.0}] * n}
        ),
        f"sample answer ({batch} items)": codec.encode(sample),
    }


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'body':<28} {'baseline us':>12} {'codec us':>10} {'ratio':>6}")
    for name, raw in bodies().items():

        def baseline(raw: bytes = raw) -> object:
            return msgpack.unpackb(raw, raw=False, ext_hook=codec._ext_hook, strict_map_key=True)

        def limited(raw: bytes = raw) -> object:
            return codec.decode(raw)

        base, ours = (
            min(timeit.repeat(f, number=500, repeat=7)) / 500 * 1e6 for f in (baseline, limited)
        )
        print(f"{name:<28} {base:>12.1f} {ours:>10.1f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
