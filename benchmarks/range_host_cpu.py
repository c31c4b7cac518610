"""Python host cost per call of RangeKernel vs Kernel on a CPU machine (issue 17), no GPU.

    python benchmarks/range_host_cpu.py --out benchmarks/results/range_host_cpu-<date>.json

What it isolates: the Python work of a call before the launcher, for an exact-shape Kernel
(M = 16, N = K = 256 bf16 NT, the reference kernel's artifact) and the RangeKernel of the
range 1..16 bound at M = 16, with the launch plan replaced by a no-op (CPU tensors pass the
fast check: get_device reports 0). Paths: Kernel.__call__, RangeKernel.__call__ (the inline
fast check of the bound view, straight to Kernel._run), "before" (RangeKernel.__call__ as
it was at 372b734: M from a.shape, for_m, then Kernel.__call__ with the keywords forwarded),
and torch.mm of 16x16x16 f32 on the CPU for scale. Interleaved rounds (the order
alternates), --calls calls per round, medians. The GPU figure (driver launch included) is
benchmarks/dynamic_m_bench.py's host block. JSON to --out, a table last.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path


class _NoopPlan:
    def launch(self, *args):
        pass

    def launch_args(self, *args):
        pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=10000)
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    import torch
    from deepgen.runtime import kernel as km
    from deepgen.runtime.range_kernel import RangeKernel
    from deepgen.runtime.reference import BLOCK, reference_artifact

    from deepgen.dims import Dim
    from deepgen.spec import GemmSpec

    plan = _NoopPlan()
    torch.Tensor.get_device = lambda self: 0  # CPU tensors through the fast check
    km._raw_stream = lambda device: 0
    km.Kernel._plan = lambda self, device: plan
    M, N, K = 16, 256, 256
    spec = GemmSpec(M=M, N=N, K=K, dtype="bf16", layout="NT")
    ek = km.Kernel(reference_artifact(spec))
    rspec = GemmSpec(M=Dim(max=16), N=N, K=K, dtype="bf16", layout="NT")
    art = reference_artifact(rspec.planning())
    (launch,) = art.launches
    art = dataclasses.replace(art, spec=rspec.to_dict(), launches=[
        dataclasses.replace(launch, grid=(launch.grid[0], f"cdiv(M, {BLOCK[1]})", 1))])
    rk = RangeKernel(art)
    a = torch.randn(M, K).to(torch.bfloat16)
    b = torch.randn(N, K).to(torch.bfloat16).t()
    c = torch.empty(M, N, dtype=torch.bfloat16)
    x, y = torch.randn(16, 16), torch.empty(16, 16)  # torch's own tiny call, for scale
    def before(a, b, c=None, **kwargs):  # RangeKernel.__call__ as it was (372b734)
        try:
            m = int(a.shape[-2])
        except (AttributeError, IndexError, TypeError):
            raise TypeError("a") from None
        return rk.for_m(m)(a, b, c, **kwargs)

    paths = {"Kernel.__call__": lambda: ek(a, b, c),
             "RangeKernel.__call__": lambda: rk(a, b, c),
             "before: for_m(M)(..., **kw)": lambda: before(a, b, c),
             "torch.mm 16x16x16 f32 (CPU)": lambda: torch.mm(x, x, out=y)}
    for fn in paths.values():
        fn()
    times = {name: [] for name in paths}
    names = list(paths)
    for r in range(args.rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = paths[name]
            t0 = time.perf_counter()
            for _ in range(args.calls):
                fn()
            times[name].append((time.perf_counter() - t0) / args.calls * 1e6)
    med = {name: statistics.median(v) for name, v in times.items()}
    out = {"what": "Python host cost per call before the launcher (no-op launch plan, CPU)",
           "date": datetime.date.today().isoformat(), "python": platform.python_version(),
           "torch": torch.__version__, "host": platform.node(), "cpu": platform.processor(),
           "M": M, "N": N, "K": K, "calls": args.calls, "rounds": args.rounds,
           "median_us": med, "samples_us": times,
           "range_minus_kernel_us": med["RangeKernel.__call__"] - med["Kernel.__call__"]}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    for name, us in med.items():
        print(f"{name:>28}: {us:7.3f} us/call")
    print(f"{'RangeKernel - Kernel':>28}: {out['range_minus_kernel_us']:+7.3f} us/call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
