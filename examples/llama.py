"""A Llama-style model from a config, profiled, optimized with DeepGen, checked against torch.

    python examples/llama.py                       # hidden 2048, 4 layers, bf16 on the GPU
    python examples/llama.py --tiny                # a few-second run (CPU or GPU)
    python examples/llama.py --hf                  # transformers' LlamaForCausalLM if installed
    python examples/llama.py --out prof --json summary.json

What it does, step by step:
  1. builds the model with random weights (no download): plain torch modules (RMSNorm,
     attention through scaled_dot_product_attention, SiLU-gated MLP, a vocabulary head), or
     with --hf transformers' LlamaForCausalLM from a LlamaConfig of the same sizes (the plain
     model when transformers is not installed, saying so);
  2. profiles a prefill step (batch x seq tokens) and a decode step (batch x 1 token, no KV
     cache: the same GEMM shapes as decoding) with deepgen.profile: the op table and the GEMM
     shapes (written to --out DIR as profile.json / gemms.csv / ops.csv, the input of
     `deepgen tune --from-profile DIR/prefill/profile.json --top-shapes 8`);
  3. deepgen.optimize(model): each nn.Linear routes to DeepGen only in the M ranges where the
     tuned database (yours, `deepgen tune install`, else the one DeepGen ships for this GPU)
     says DeepGen beats torch, host cost counted, through a range kernel where the database
     has one for that range; everything else stays with torch. On a CPU everything stays with
     torch (DeepGen runs CUDA tensors), and the example says so;
  4. compares the optimized model's logits with torch's (relative Frobenius error against the
     dtype's tolerance) and times both, interleaved (optimize / restore per round, median).

The timings here are an illustration; the measured end-to-end claim is
benchmarks/model_e2e.py's (torch in the same run, results under benchmarks/results/).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import deepgen
from deepgen import routing

SIZES = {"hidden": 2048, "layers": 4, "heads": 16, "inter": 5632, "vocab": 32000,
         "batch": 4, "seq": 512}
TINY = {"hidden": 64, "layers": 2, "heads": 4, "inter": 128, "vocab": 256, "batch": 2,
        "seq": 16}
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 2e-2}
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}


# -- the model -----------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float = 1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(n)), eps

    def forward(self, x):
        v = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(v + self.eps)).to(x.dtype) * self.weight


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, inter: int):
        super().__init__()
        self.heads = heads
        self.attn_norm, self.mlp_norm = RMSNorm(hidden), RMSNorm(hidden)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(hidden, hidden, bias=False) for _ in range(4))
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        b, s, d = x.shape
        h = self.attn_norm(x)
        q, k, v = (p(h).view(b, s, self.heads, -1).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=s > 1)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, s, d))
        h = self.mlp_norm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    """Llama's layer structure in plain torch (no rotary embedding: it has no GEMM)."""

    def __init__(self, hidden: int, layers: int, heads: int, inter: int, vocab: int):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Block(hidden, heads, inter) for _ in range(layers))
        self.norm = RMSNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def build(sizes: dict, use_hf: bool) -> tuple[nn.Module, str]:
    """(model, what it is) with random weights (seeded)."""
    torch.manual_seed(0)
    if use_hf:
        try:
            from transformers import LlamaConfig, LlamaForCausalLM
        except ImportError:
            print("transformers is not installed: the plain torch Llama instead")
        else:
            cfg = LlamaConfig(hidden_size=sizes["hidden"], intermediate_size=sizes["inter"],
                              num_hidden_layers=sizes["layers"],
                              num_attention_heads=sizes["heads"],
                              num_key_value_heads=sizes["heads"], vocab_size=sizes["vocab"],
                              max_position_embeddings=max(2048, sizes["seq"]))
            model = LlamaForCausalLM(cfg)
            model.config.use_cache = False
            return model, "transformers LlamaForCausalLM"
    model = Llama(sizes["hidden"], sizes["layers"], sizes["heads"], sizes["inter"],
                  sizes["vocab"])
    for p in model.parameters():
        if p.dim() == 2:
            nn.init.normal_(p, std=0.02)
    return model, "plain torch Llama"


def logits_of(model, tokens):
    out = model(tokens)
    return out.logits if hasattr(out, "logits") else out


# -- timing --------------------------------------------------------------------------------------

def time_ms(fn, gpu: bool, calls: int = 3) -> float:
    """Milliseconds per call of fn (CUDA events on a GPU, else the wall clock)."""
    if gpu:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / calls
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) * 1e3 / calls


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    g, w = got.double(), want.double()
    return float((g - w).norm() / w.norm().clamp_min(1e-30))


# -- the routes ----------------------------------------------------------------------------------

def routes(model, steps: dict, dtype: str, device: torch.device) -> list[dict]:
    """Per distinct nn.Linear (N, K) and step: where deepgen.optimize sends its GEMM."""
    from deepgen.spec import GemmSpec

    shapes = sorted({(m.out_features, m.in_features) for m in model.modules()
                     if isinstance(m, nn.Linear)})
    out = []
    for name, M in steps.items():
        for N, K in shapes:
            if device.type != "cuda":
                where, why = "torch", "not a CUDA tensor"
            else:
                target, gpu = routing._device(device.index or 0)
                spec = GemmSpec(M=M, N=N, K=K, dtype=dtype, layout="NT")
                r = routing.route_of(spec, target, gpu)
                where = {"range": "deepgen (range kernel)", "exact": "deepgen"}.get(r, "torch")
                entry = routing.database_entry(spec, target, gpu)
                why = ("the tuned database says DeepGen wins in this M range" if r else
                       "no database entry in this M range says DeepGen beats torch"
                       + (f" (own entry: DeepGen {entry['ms']:.4g} ms vs torch "
                          f"{entry['baseline_ms']:.4g} ms, {entry['origin']} database)"
                          if entry and entry.get("ms") and entry.get("baseline_ms") else ""))
            out.append({"step": name, "M": M, "N": N, "K": K, "route": where, "why": why})
    return out


# -- main ----------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for k, v in SIZES.items():
        p.add_argument(f"--{k}", type=int, default=None, help=f"default {v} ({TINY[k]} tiny)")
    p.add_argument("--tiny", action="store_true", help="small sizes: seconds on a CPU")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help="default bf16 on a GPU, f32 on a CPU")
    p.add_argument("--device", default=None, help="default cuda when there is a GPU, else cpu")
    p.add_argument("--hf", action="store_true", help="transformers' LlamaForCausalLM")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    p.add_argument("--out", default=None, help="profile files go to OUT/prefill, OUT/decode")
    p.add_argument("--json", default=None, help="write a summary JSON here")
    a = p.parse_args(argv)

    base = TINY if a.tiny else SIZES
    sizes = {k: getattr(a, k) or base[k] for k in SIZES}
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    dtype_name = a.dtype or ("bf16" if gpu else "f32")
    dtype = DTYPES[dtype_name]
    model, what = build(sizes, a.hf)
    model = model.to(device=device, dtype=dtype).eval()
    print(f"model: {what}, " + ", ".join(f"{k} {v}" for k, v in sizes.items())
          + f", {dtype_name} on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if gpu else ""))
    g = torch.Generator().manual_seed(1)
    prefill = torch.randint(0, sizes["vocab"], (sizes["batch"], sizes["seq"]), generator=g)
    decode = torch.randint(0, sizes["vocab"], (sizes["batch"], 1), generator=g)
    steps = {"prefill": prefill.to(device), "decode": decode.to(device)}

    # 1. profile (torch as it is)
    profiles = {}
    with torch.inference_mode():
        for name, tokens in steps.items():
            print(f"\n== profile: {name} ({tokens.shape[0]} x {tokens.shape[1]} tokens)")
            out = None if a.out is None else Path(a.out) / name
            rep = deepgen.profile(logits_of, model, tokens, out=out, name=name, top=12)
            profiles[name] = {"gemm_percent": rep["gemm_percent"],
                              "total_us": rep["total_us"], "gemm_shapes": len(rep["gemms"])}
    if a.out:
        print(f"\ntune the shapes that matter (on the GPU): deepgen tune --from-profile "
              f"{Path(a.out) / 'prefill' / 'profile.json'} --top-shapes 8")

    # 2. reference logits from torch, then optimize
    with torch.inference_mode():
        want = {n: logits_of(model, t).float() for n, t in steps.items()}
    deepgen.optimize(model)
    optimized = sum(type(m) is routing.OptimizedLinear for m in model.modules())
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    Ms = {n: t.numel() for n, t in steps.items()}
    table = routes(model, Ms, dtype_name, device)
    print(f"\n== deepgen.optimize: {optimized} of {linears} nn.Linear layers became "
          f"OptimizedLinear (the others win in no M range and stay plain nn.Linear; on a CPU "
          f"every layer is kept, decided per call once it is on a GPU)")
    for r in table:
        print(f"  {r['step']:7s} M={r['M']:<6d} N={r['N']:<6d} K={r['K']:<6d} -> {r['route']}"
              f": {r['why']}")
    if not gpu:
        print("  everything runs on torch here: DeepGen routes CUDA tensors only (no GPU)")

    # 3. logits and time, interleaved rounds: torch (restored) vs optimized
    result = {"model": what, "sizes": sizes, "dtype": dtype_name, "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if gpu else None,
              "profiles": profiles, "routes": table, "optimized_layers": optimized,
              "linear_layers": linears, "steps": {}}
    ok = True
    with torch.inference_mode():
        for name, tokens in steps.items():
            got = logits_of(model, tokens).float()
            err = rel_err(got, want[name])
            tol = TOLERANCE[dtype]
            ok &= err <= tol
            times = {"torch": [], "deepgen": []}
            fn = lambda t=tokens: logits_of(model, t)
            fn()
            for _ in range(a.rounds):
                routing.restore(model)
                times["torch"].append(time_ms(fn, gpu))
                deepgen.optimize(model)
                times["deepgen"].append(time_ms(fn, gpu))
            med = {k: statistics.median(v) for k, v in times.items()}
            result["steps"][name] = {"rel_err_vs_torch": err, "tolerance": tol,
                                     "torch_ms": med["torch"], "optimized_ms": med["deepgen"],
                                     "speedup": med["torch"] / med["deepgen"],
                                     "rounds_ms": times}
            print(f"\n== {name}: logits vs torch rel. error {err:.2e} (tolerance {tol:g}) "
                  f"{'ok' if err <= tol else 'TOO LARGE'}; torch {med['torch']:.3f} ms, "
                  f"optimized {med['deepgen']:.3f} ms ({med['torch'] / med['deepgen']:.3f}x, "
                  f"median of {a.rounds} interleaved rounds)")
    routing.restore(model)
    result["ok"] = ok
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {a.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
