"""The model-level GPU cases (tests/gpu/test_model_gpu.py) and their kernels.

    python tests/gpu/model_cases.py DIR     (a machine with MLIR; no GPU needed)

runs every case on the CPU with DeepGen's kernels stubbed out (torch computes; CPU tensors
pass for CUDA ones), records the GemmSpec of every deepgen.gemm call the case makes (forward
and backward), and compiles each with its default config into DIR/model/<spec>/ (a bundle per
kernel). The GPU test preloads them (DEEPGEN_TEST_BUNDLE=DIR), so the GPU host needs no MLIR.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

# name: (dtype, a shape, b: ("linear", N) for an nn.Linear weight (N, K) or a b shape,
#        bias ("col" / "row" / None), activation)
AUTOGRAD = {
    "bf16-linear-bias-gelu": (torch.bfloat16, (2, 64, 128), ("linear", 256), "col", "gelu_tanh"),
    "f16-batched-rowbias-relu": (torch.float16, (4, 64, 96), (4, 96, 128), "row", "relu"),
    "f32-plain": (torch.float32, (128, 64), (64, 96), None, None),
}
MLP = {"hidden": 512, "intermediate": 1408, "head": 1024, "tokens": (2, 96)}


def autograd_inputs(name: str, device, seed: int = 0):
    """(a, b, bias, activation, bias_dim) of a case: leaves in the case's dtype; b is the
    transposed view of a Linear weight for ("linear", N)."""
    dtype, a_shape, b_shape, bias_dim, act = AUTOGRAD[name]
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(a_shape, generator=g).to(device, dtype)
    if b_shape[0] == "linear":
        w = (torch.randn(b_shape[1], a_shape[-1], generator=g) / a_shape[-1] ** 0.5).to(
            device, dtype)
        b = w.t()
    else:
        b = (torch.randn(b_shape, generator=g) / a_shape[-1] ** 0.5).to(device, dtype)
    bias = None
    if bias_dim is not None:
        n = b.shape[-1] if bias_dim == "col" else a_shape[-2]
        bias = torch.randn(n, generator=g).to(device, dtype)
    return a, b, bias, act, bias_dim or "col"


class LlamaMLP(torch.nn.Module):
    """A Llama-style MLP (gate, up, down without bias, SiLU(gate) * up) and a head with bias."""

    def __init__(self, hidden: int, intermediate: int, head: int):
        super().__init__()
        self.gate = torch.nn.Linear(hidden, intermediate, bias=False)
        self.up = torch.nn.Linear(hidden, intermediate, bias=False)
        self.down = torch.nn.Linear(intermediate, hidden, bias=False)
        self.head = torch.nn.Linear(hidden, head, bias=True)

    def forward(self, x):
        h = x + self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))
        return self.head(h)


def mlp(device, dtype=torch.bfloat16, seed: int = 0):
    torch.manual_seed(seed)
    model = LlamaMLP(MLP["hidden"], MLP["intermediate"], MLP["head"])
    x = torch.randn(*MLP["tokens"], MLP["hidden"])
    return model.to(device, dtype), x.to(device, dtype)


def mlp_specs(dtype: str = "bf16") -> list[dict]:
    """The tuned-database shapes of the MLP's layers (without epilogue): (spec fields)."""
    M = MLP["tokens"][0] * MLP["tokens"][1]
    h, i, o = MLP["hidden"], MLP["intermediate"], MLP["head"]
    return [{"M": M, "N": n, "K": k, "dtype": dtype, "layout": "NT"}
            for n, k in ((i, h), (h, i), (o, h))]


def collect_specs() -> list:
    """Every GemmSpec the cases request, found by running them on the CPU (kernels stubbed)."""
    import warnings

    from deepgen import api, fallback, routing

    seen = {}
    saved = (api._check_devices, api.target_of, api._kernel_or_torch, routing._on_gpu,
             routing._device, routing.wins, routing.range_wins, routing._may_win)

    def record(spec, config, target):  # returns None: torch computes
        seen.setdefault(spec, None)

    api._check_devices = lambda tensors: None
    api.target_of = lambda device: "sm_90a"
    api._kernel_or_torch = record
    routing._on_gpu = lambda t: True
    routing._device = lambda index: ("sm_90a", "collect")
    # the GPU test's database makes every MLP layer win at its exact M (no range entries);
    # here there is no database, so the rule is told the same
    routing.wins = lambda *args, **kwargs: True
    routing.range_wins = lambda *args, **kwargs: False
    routing._may_win = lambda linear: True
    fallback._state["warned"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import deepgen

            for name in AUTOGRAD:
                a, b, bias, act, bias_dim = autograd_inputs(name, "cpu")
                leaves = [t.detach().requires_grad_() if t is not None else None
                          for t in (a, b, bias)]
                out = deepgen.gemm(*leaves[:2], bias=leaves[2], activation=act,
                                   bias_dim=bias_dim)
                out.float().sum().backward()
            model, x = mlp("cpu")
            routing.optimize(model)
            routing.reset()
            with torch.no_grad():
                model(x)
            x = x.detach().requires_grad_()  # the backward test's GEMMs too
            model(x).float().sum().backward()
    finally:
        (api._check_devices, api.target_of, api._kernel_or_torch, routing._on_gpu,
         routing._device, routing.wins, routing.range_wins, routing._may_win) = saved
    return list(seen)


def spec_name(spec) -> str:
    steps = "-".join(s for s in spec.epilogue.steps if s != "alpha_beta") or "plain"
    return (f"{spec.dtype}-{spec.batch}x{spec.M}x{spec.N}x{spec.K}-{spec.layout}-{steps}"
            + (f"-{spec.operand_dtype('bias')}" if "bias" in steps else ""))


def main(out: str) -> int:
    from deepgen.compiler import compile_artifact

    d = Path(out) / "model"
    specs = collect_specs()
    for spec in specs:
        art = compile_artifact(spec, None, "sm_90a")
        art.save(d / spec_name(spec))
        print(f"{spec_name(spec)}: {art.config.get('strategy')}", flush=True)
    print(f"{len(specs)} kernels in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
