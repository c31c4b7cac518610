"""deepgen.gemm's derivative: C = act(alpha * A @ B + bias), a torch.autograd.Function.

    G  = dC * act'(Z)            Z = alpha * A @ B + bias (relu: from C; gelu_tanh, silu: Z
                                 recomputed by one more GEMM rather than kept in memory)
    dA = alpha * G @ B^T         a GEMM through DeepGen (B^T is B read transposed, no copy)
    dB = alpha * A^T @ G         a GEMM through DeepGen; with folded leading dimensions
                                 (a (..., M, K) x b (K, N)), A and G folded to 2-D first
    dbias = G summed over rows (bias_dim "col") or columns (bias_dim "row"; and the batch)

Both the forward and the backward call torch.ops.deepgen.gemm: in eager mode that is DeepGen's
kernel (or torch's GEMM where no kernel can be had: deepgen.fallback), under torch.compile
the op's fake implementation, so dynamo and AOTAutograd trace this Function as they trace
any other. `out=` with inputs that require grad is an error, as for torch's out= ops.
"""
from __future__ import annotations

import math

import torch

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GemmFunction(torch.autograd.Function):
    @staticmethod
    def forward(a, b, bias, alpha, activation, bias_dim):
        return torch.ops.deepgen.gemm(a, b, alpha, bias, activation, bias_dim)

    @staticmethod
    def setup_context(ctx, inputs, output):
        a, b, bias, alpha, activation, bias_dim = inputs
        ctx.alpha, ctx.activation, ctx.bias_dim = alpha, activation, bias_dim
        ctx.bias_dtype = None if bias is None else bias.dtype
        keep_c = output if activation == "relu" else None
        ctx.save_for_backward(a, b, bias, keep_c)

    @staticmethod
    def backward(ctx, dc):
        a, b, bias, c = ctx.saved_tensors
        alpha, act, bias_dim = ctx.alpha, ctx.activation, ctx.bias_dim
        g = _through_activation(dc, act, c, a, b, bias, alpha, bias_dim)
        da = db = dbias = None
        if ctx.needs_input_grad[0]:
            da = torch.ops.deepgen.gemm(g, b.transpose(-1, -2), alpha)
        if ctx.needs_input_grad[1]:
            if b.dim() == 2:  # a's leading dimensions were folded into M
                a2, g2 = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
                db = torch.ops.deepgen.gemm(a2.transpose(0, 1), g2, alpha)
            else:
                db = torch.ops.deepgen.gemm(a.transpose(-1, -2), g, alpha)
        if bias is not None and ctx.needs_input_grad[2]:
            gf = g.float()
            if bias_dim == "col":
                dbias = gf.reshape(-1, gf.shape[-1]).sum(0)
            elif b.dim() == 3:  # M values shared by the batch
                dbias = gf.sum(-1).sum(0)
            else:
                dbias = gf.sum(-1).reshape(-1)
            dbias = dbias.to(ctx.bias_dtype)
        return da, db, dbias, None, None, None


def _through_activation(dc, act, c, a, b, bias, alpha, bias_dim):
    """dC * act'(Z), in dC's dtype (the GEMMs' input type)."""
    if act == "none":
        return dc
    if act == "relu":
        return dc * (c > 0)
    z = torch.ops.deepgen.gemm(a, b, alpha, bias, "none", bias_dim).float()
    if act == "silu":
        s = torch.sigmoid(z)
        d = s * (1 + z * (1 - s))
    else:  # gelu_tanh: 0.5 z (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3)
        t = torch.tanh(SQRT_2_OVER_PI * (z + 0.044715 * z ** 3))
        d = 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * SQRT_2_OVER_PI * (1 + 3 * 0.044715 * z * z)
    return (dc.float() * d).to(dc.dtype)


def gemm(a, b, out, alpha, bias, activation, bias_dim, config):
    """deepgen.gemm for inputs that require grad (called by it with grad mode on)."""
    if out is not None:
        raise RuntimeError("out: deepgen.gemm(..., out=...) does not support automatic "
                           "differentiation (an input requires grad); call it without out")
    if config is not None:
        raise NotImplementedError("config: not supported with inputs that require grad (the "
                                  "backward's GEMMs have other shapes); record it in the "
                                  "tuned database instead")
    return GemmFunction.apply(a, b, bias, float(alpha), activation or "none", bias_dim)
