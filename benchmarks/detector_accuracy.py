"""Accuracy of the shapes detector on generator images: per attribute and all five exact.

    python benchmarks/detector_accuracy.py                 # 2,000 scenes, 64 px
    python benchmarks/detector_accuracy.py --n 1000 --size 128

Scenes come from ``diffprof.quality.shapes.dataset`` (with position, size and colour jitter), then
are scored clean and under three levels of the imperfections a small diffusion model makes
(``shapes.degrade``: colour shift and gain, blur, specks, Gaussian noise). The detector must reach
99% on every attribute at the ``clean`` and ``model-like`` levels (issue #5).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from diffprof.quality.detector import attribute_accuracy
from diffprof.quality.shapes import ATTRIBUTES, dataset, degrade

#: name -> degrade() arguments (None: the generator's images as they are).
LEVELS: dict[str, dict[str, float] | None] = {
    "clean": None,
    "model-like": {"noise": 10.0, "blur": 0.8, "color_shift": 15.0, "blobs": 2},
    "heavy": {"noise": 15.0, "blur": 1.2, "color_shift": 20.0, "blobs": 4},
    "extreme": {"noise": 25.0, "blur": 1.5, "color_shift": 20.0, "blobs": 6},
}
TARGET = 0.99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of random scenes (default 2000)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenes and degradations")
    args = parser.parse_args()

    images, prompts = dataset(args.n, seed=args.seed, size=args.size)
    columns = [*ATTRIBUTES, "all"]
    print(f"detector accuracy, {args.n} scenes at {args.size} px, seed {args.seed}")
    print(f"{'level':<12}" + "".join(f"{c:>12}" for c in columns) + f"{'ms/image':>10}")
    failed = False
    for level, spec in LEVELS.items():
        rng = np.random.default_rng(args.seed + 1)
        data = images if spec is None else degrade(images, rng, **spec)  # type: ignore[arg-type]
        start = time.perf_counter()
        acc = attribute_accuracy(data, prompts)
        ms = (time.perf_counter() - start) / max(args.n, 1) * 1e3
        print(f"{level:<12}" + "".join(f"{acc[c]:>12.2%}" for c in columns) + f"{ms:>10.2f}")
        if level in ("clean", "model-like") and min(acc.values()) < TARGET:
            failed = True
    print(f"target: >= {TARGET:.0%} per attribute and all-five at clean and model-like: {'FAIL' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
