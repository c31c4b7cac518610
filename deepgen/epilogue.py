"""EpilogueSpec: what happens to the f32 accumulator between the last MMA and the store.

An ordered chain of steps, applied left to right to acc = op(A) @ op(B) (f32):

    "alpha_beta"   x = alpha * x + beta * C        (C is not read when beta == 0)
    "bias_row"     x = x + bias[m]                 (one value per row: bias has M elements)
    "bias_col"     x = x + bias[n]                 (one value per column: N elements, the
                                                    nn.Linear bias of y = x W^T + b)
    "relu"         x = max(x, 0)
    "gelu_tanh"    x = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    "silu"         x = x / (1 + exp(-x))

then the output cast to GemmSpec.out_dtype. The default chain is ("alpha_beta",): today's
C = alpha A B + beta C. The empty chain stores the raw accumulator (split-K's partial sums).
A batched bias is shared by every batch element. The bias operand has `bias_dtype` elements
(default: the input dtype, as nn.Linear's bias has its weight's dtype).

Part of GemmSpec, hence of every cache key and tuned-database key. Imports neither MLIR
nor torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from deepgen.dtypes import OUTPUT_DTYPES
from deepgen.errors import SpecError

ACTIVATIONS = ("relu", "gelu_tanh", "silu")
BIAS_STEPS = {"row": "bias_row", "col": "bias_col"}
STEPS = ("alpha_beta", *BIAS_STEPS.values(), *ACTIVATIONS)
# Legacy string epilogues of compile_gemm(..., epilogue=...) and the store ops.
LEGACY = {"none": ("alpha_beta",), "relu": ("alpha_beta", "relu"), "partial": ()}


class EpilogueError(SpecError):
    """An EpilogueSpec field is out of range; the message names the field."""


@dataclass(frozen=True)
class EpilogueSpec:
    steps: tuple[str, ...] = ("alpha_beta",)
    bias_dtype: str | None = None  # element type of the bias operand; None: the input dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        self.validate()

    def validate(self) -> None:
        for s in self.steps:
            if s not in STEPS:
                raise EpilogueError(f"epilogue.steps: unknown step {s!r}; known: {STEPS}")
        for s in set(self.steps):
            if self.steps.count(s) > 1:
                raise EpilogueError(f"epilogue.steps: {s!r} appears {self.steps.count(s)} "
                                    "times; each step at most once")
        if sum(s in BIAS_STEPS.values() for s in self.steps) > 1:
            raise EpilogueError("epilogue.steps: at most one bias (bias_row or bias_col)")
        if sum(s in ACTIVATIONS for s in self.steps) > 1:
            raise EpilogueError(f"epilogue.steps: at most one activation of {ACTIVATIONS}")
        if self.bias_dtype is not None:
            if self.bias_dtype not in OUTPUT_DTYPES:
                raise EpilogueError(f"epilogue.bias_dtype: must be one of {OUTPUT_DTYPES}, "
                                    f"got {self.bias_dtype!r}")
            if self.bias is None:
                raise EpilogueError("epilogue.bias_dtype: set, but the chain has no bias step")

    @classmethod
    def of(cls, *, bias: str | None = None, activation: str | None = None,
           bias_dtype: str | None = None, alpha_beta: bool = True) -> "EpilogueSpec":
        """The usual chain: alpha/beta, then the bias ("row" or "col"), then the activation."""
        steps = ["alpha_beta"] if alpha_beta else []
        if bias is not None:
            if bias not in BIAS_STEPS:
                raise EpilogueError(f"bias: must be None, 'row' (M values) or 'col' (N "
                                    f"values), got {bias!r}")
            steps.append(BIAS_STEPS[bias])
        if activation not in (None, "none"):
            if activation not in ACTIVATIONS:
                raise EpilogueError(f"activation: must be None or one of {ACTIVATIONS}, "
                                    f"got {activation!r}")
            steps.append(activation)
        return cls(tuple(steps), bias_dtype)

    @classmethod
    def parse(cls, value) -> "EpilogueSpec":
        """An EpilogueSpec from itself, a legacy string ("none", "relu", "partial"), a list of
        steps, or a dict {"steps": [...], "bias_dtype": ...} (to_dict's form)."""
        if isinstance(value, EpilogueSpec):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            if value not in LEGACY:
                raise EpilogueError(f"epilogue: unknown {value!r}; a string must be one of "
                                    f"{sorted(LEGACY)} (or give an EpilogueSpec / a list of "
                                    f"steps of {STEPS})")
            return cls(LEGACY[value])
        if isinstance(value, (list, tuple)):
            return cls(tuple(value))
        if isinstance(value, dict):
            unknown = sorted(set(value) - {"steps", "bias_dtype"})
            if unknown:
                raise EpilogueError(f"epilogue.{unknown[0]}: not an EpilogueSpec field")
            return cls(tuple(value.get("steps", ("alpha_beta",))), value.get("bias_dtype"))
        raise EpilogueError(f"epilogue: expected an EpilogueSpec, str, list or dict, got "
                            f"{type(value).__name__}")

    @property
    def bias(self) -> str | None:
        """"row", "col" or None."""
        for kind, step in BIAS_STEPS.items():
            if step in self.steps:
                return kind
        return None

    @property
    def activation(self) -> str | None:
        return next((s for s in self.steps if s in ACTIVATIONS), None)

    @property
    def is_default(self) -> bool:
        return self == EpilogueSpec()

    @property
    def reads_c(self) -> bool:
        return "alpha_beta" in self.steps

    @property
    def needs_math(self) -> bool:
        """Whether lowering calls device math functions (libdevice / ocml)."""
        return any(s in ("gelu_tanh", "silu") for s in self.steps)

    def operands(self) -> tuple[str, ...]:
        """Named tensor operands the chain reads besides A, B, C."""
        return ("bias",) if self.bias else ()

    def bias_dtype_for(self, input_dtype: str) -> str:
        return self.bias_dtype or input_dtype

    def to_dict(self) -> dict:
        d = {"steps": list(self.steps)}
        if self.bias_dtype is not None:
            d["bias_dtype"] = self.bias_dtype
        return d

    def __str__(self) -> str:
        return "+".join(self.steps) or "raw"
