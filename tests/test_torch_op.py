"""torch.ops.deepgen.gemm / gemm_out: schemas, fake implementations, torch.compile(fullgraph).

Meta tensors stand in for CUDA ones: torch.compile traces through the fake implementation and
the aot_eager backend runs the graph on them, so nothing here needs a GPU."""
from __future__ import annotations

import pytest
import torch

import deepgen

META = "meta"


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, device=META, dtype=dtype)


class GraphRecorder:
    """A torch.compile backend that keeps the FX graphs it is given and runs them eagerly."""

    def __init__(self):
        self.graphs = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return gm.forward

    def targets(self) -> list[str]:
        return [str(n.target) for gm in self.graphs for n in gm.graph.nodes
                if n.op == "call_function"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("a_shape, b_shape, dtype", [
    ((64, 32), (32, 16), torch.float32),
    ((3, 64, 32), (3, 32, 16), torch.bfloat16),
    ((1, 8), (8, 1), torch.float16),
])
def test_op_under_torch_compile_fullgraph(a_shape, b_shape, dtype):
    def f(a, b):
        return torch.ops.deepgen.gemm(a, b, 2.0) + 1

    out = torch.compile(f, fullgraph=True, backend="aot_eager")(meta(*a_shape, dtype=dtype),
                                                                 meta(*b_shape, dtype=dtype))
    assert out.shape == (*a_shape[:-1], b_shape[-1]) and out.dtype == dtype
    assert out.device.type == META


def test_op_is_one_node_of_the_graph():
    rec = GraphRecorder()
    f = torch.compile(lambda a, b: torch.relu(torch.ops.deepgen.gemm(a, b)), fullgraph=True,
                      backend=rec)
    f(meta(8, 4), meta(4, 2))
    assert len(rec.graphs) == 1 and rec.targets().count("deepgen.gemm") == 1


def test_deepgen_gemm_becomes_the_ops_under_compile():
    rec = GraphRecorder()

    def f(a, b, out):
        c = deepgen.gemm(a, b, alpha=0.5)
        deepgen.gemm(a, b, out=out, beta=1.0)
        return c, out

    a, b, out = meta(2, 8, 4), meta(2, 4, 6), meta(2, 8, 6, dtype=torch.float32)
    c, out2 = torch.compile(f, fullgraph=True, backend=rec)(a, b, out)
    assert c.shape == (2, 8, 6) and out2 is out
    assert sorted(rec.targets()) == ["deepgen.gemm", "deepgen.gemm_out"]


def test_gemm_out_is_functionalized_by_aot():
    def f(a, b, out):
        torch.ops.deepgen.gemm_out(a, b, out, 1.0, 0.5)
        return out * 2

    out = meta(8, 6, dtype=torch.bfloat16)
    r = torch.compile(f, fullgraph=True, backend="aot_eager")(meta(8, 4, dtype=torch.float16),
                                                             meta(4, 6, dtype=torch.float16), out)
    assert r.shape == (8, 6) and r.dtype == torch.bfloat16


@pytest.mark.parametrize("a, b, error, message", [
    (lambda: meta(8, 4), lambda: meta(5, 2), ValueError, "b: has 5 rows, but a has K = 4"),
    (lambda: meta(8, 4), lambda: meta(2, 4, 2), ValueError, "must both be 2-D or both 3-D"),
    (lambda: meta(2, 8, 4), lambda: meta(3, 4, 2), ValueError, "b: batch 3 differs"),
    (lambda: meta(8, 4), lambda: meta(4, 2, dtype=torch.float16), TypeError, "b: dtype"),
])
def test_fake_checks_shapes_in_eager_and_under_compile(a, b, error, message):
    with pytest.raises(error, match=message):
        torch.ops.deepgen.gemm(a(), b())
    with pytest.raises(Exception, match=message):  # dynamo wraps it in its own error type
        torch.compile(lambda x, y: torch.ops.deepgen.gemm(x, y), fullgraph=True,
                      backend="aot_eager")(a(), b())


def test_gemm_out_fake_checks_out_shape():
    with pytest.raises(ValueError, match=r"out: expected shape \(8, 2\), got \(2, 8\)"):
        torch.ops.deepgen.gemm_out(meta(8, 4), meta(4, 2), meta(2, 8))


@pytest.mark.parametrize("op, args", [
    ("gemm", lambda: (meta(8, 4), meta(4, 2), 1.5)),
    ("gemm_out", lambda: (meta(3, 8, 4), meta(3, 4, 2), meta(3, 8, 2), 1.0, 0.0)),
])
def test_opcheck(op, args):
    result = torch.library.opcheck(getattr(torch.ops.deepgen, op).default, args())
    assert set(result.values()) == {"SUCCESS"}


def test_op_on_cpu_tensors_raises_deepgens_error():
    with pytest.raises(TypeError, match="a: must be a CUDA tensor, got device 'cpu'"):
        torch.ops.deepgen.gemm(torch.randn(8, 4), torch.randn(4, 2))


def test_config_is_refused_under_compile():
    f = torch.compile(lambda a, b: deepgen.gemm(a, b, config={"BM": 16}), fullgraph=True,
                      backend="eager")
    with pytest.raises(Exception, match="config: not supported under torch.compile"):
        f(meta(8, 4), meta(4, 2))
