"""faiss-cpu IndexFlatIP on the keys and queries `longmem bench` exported: the exact
inner-product search the paper's code uses, one index per head (as the paper builds them).

Usage: python3 faiss_flat.py DIR
DIR holds `meta.json` ({"heads", "slots", "queries", "dim", "k", "warmup", "samples"}),
`keys.f32` ([heads, slots, dim] little-endian f32) and `queries.f32` ([heads, queries, dim]).
Writes `ids.i64` ([heads, queries, k]) and `timing.json` ({"seconds": [...], "threads",
"faiss"}); adding the keys to the indices is not timed, as writing the bank is timed apart.
Exits with 3 and a message on stderr when faiss or numpy is missing.
"""

import json
import sys
import time
from pathlib import Path

try:
    import faiss
    import numpy as np
except ImportError as e:
    print(f"faiss-cpu is not installed ({e}); `pip install faiss-cpu` or run `just bench`", file=sys.stderr)
    sys.exit(3)


def main(folder: Path) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    heads, slots, queries, dim, k = (meta[key] for key in ("heads", "slots", "queries", "dim", "k"))
    keys = np.fromfile(folder / "keys.f32", dtype="<f4").reshape(heads, slots, dim)
    qs = np.fromfile(folder / "queries.f32", dtype="<f4").reshape(heads, queries, dim)
    indices = []
    for h in range(heads):
        index = faiss.IndexFlatIP(dim)
        index.add(np.ascontiguousarray(keys[h]))
        indices.append(index)

    def search() -> np.ndarray:
        return np.stack([indices[h].search(qs[h], k)[1] for h in range(heads)])

    for _ in range(meta["warmup"]):
        search()
    seconds = []
    for _ in range(meta["samples"]):
        start = time.perf_counter()
        ids = search()
        seconds.append(time.perf_counter() - start)
    ids.astype("<i8").tofile(folder / "ids.i64")
    timing = {"seconds": seconds, "threads": faiss.omp_get_max_threads(), "faiss": faiss.__version__}
    (folder / "timing.json").write_text(json.dumps(timing))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
