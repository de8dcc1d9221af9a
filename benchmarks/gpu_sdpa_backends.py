"""Which SDPA kernel is fastest for the SD family's attention shapes on this GPU?

    bash -c 'source benchmarks/gpu_env.sh && python3 benchmarks/gpu_sdpa_backends.py'

torch picks one backend per call (cuDNN on Hopper for most of these); SD 1.5's 64x64 level has head
dim 40, which kernels pad to 64, so another backend might waste less. Times every backend that
accepts each shape (fp16, batch 2 = the guidance pair), CUDA events over many calls, median of
rounds, and the one torch picks by default. Self-attention at every UNet level, and the
cross-attention over 77 text tokens at the largest level.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import scaled_dot_product_attention as sdpa

#: (model, level, heads, query tokens, key tokens, head dim) at batch 2 (CFG), 512 px SD 1.5, 1024 px SDXL.
SHAPES = [
    ("sd15", "64x64 self", 8, 4096, 4096, 40),
    ("sd15", "64x64 cross", 8, 4096, 77, 40),
    ("sd15", "32x32 self", 8, 1024, 1024, 80),
    ("sd15", "16x16 self", 8, 256, 256, 160),
    ("sd15", "16x16 cross", 8, 256, 77, 160),
    ("sd15", "8x8 self", 8, 64, 64, 160),
    ("sdxl", "64x64 self", 10, 4096, 4096, 64),
    ("sdxl", "64x64 cross", 10, 4096, 77, 64),
    ("sdxl", "32x32 self", 20, 1024, 1024, 64),
]
BACKENDS = {"default": None, "cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


def time_us(fn, iters: int, rounds: int) -> float:
    for _ in range(3):
        fn()
    samples = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) * 1000 / iters)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"{torch.cuda.get_device_name()}  torch {torch.__version__}  cuDNN {torch.backends.cudnn.version()}")
    print(f"{'model':5} {'shape':12} {'B,H,Sq,Sk,d':22} " + " ".join(f"{b:>10}" for b in BACKENDS) + "  picked  (us per call)")
    for model, level, heads, sq, sk, d in SHAPES:
        q = torch.randn(2, heads, sq, d, device="cuda", dtype=torch.float16)
        k = torch.randn(2, heads, sk, d, device="cuda", dtype=torch.float16)
        v = torch.randn_like(k)
        ref = sdpa(q.float(), k.float(), v.float())
        cells = []
        for name, backend in BACKENDS.items():
            try:
                if backend is None:
                    us = time_us(lambda: sdpa(q, k, v), args.iters, args.rounds)
                    out = sdpa(q, k, v)
                else:
                    with sdpa_kernel(backend):
                        us = time_us(lambda: sdpa(q, k, v), args.iters, args.rounds)
                        out = sdpa(q, k, v)
                err = float((out.float() - ref).norm() / ref.norm())
                cells.append(f"{us:10.1f}" if err < 1e-2 else f"{'err':>10}")
            except RuntimeError:
                cells.append(f"{'n/a':>10}")
        picked = SDPBackend(torch._fused_sdp_choice(q, k, v)).name  # what torch's dispatcher chooses by default
        print(f"{model:5} {level:12} {f'2,{heads},{sq},{sk},{d}':22} " + " ".join(cells) + f"  {picked}")


if __name__ == "__main__":
    main()
