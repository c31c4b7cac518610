"""The runtime on a real GPU: correctness, streams, CUDA graphs, torch.compile, several GPUs.

Runs on the GPU host without MLIR: kernels are the reference PTX GEMM (the driver compiles
it), plus, when DEEPGEN_GPU_BUNDLES names a directory, every bundle in it (compiled on a CPU
machine by benchmarks/runtime_bundles.py). Every output is poisoned with NaN before a launch
that must overwrite it, and checked against a float64 reference (relative Frobenius error).

On the GPU host, from the repository root (bundles made beforehand on a machine with MLIR by
`python benchmarks/runtime_bundles.py`, which writes .carry/runtime_bundles):

    pip install --no-build-isolation --no-deps -e .      # builds the launcher there
    DEEPGEN_GPU_BUNDLES=.carry/runtime_bundles python -m pytest tests/gpu/test_runtime_gpu.py
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

import deepgen
from deepgen import api
from deepgen.runtime import DriverError, Kernel, KernelArtifact, Launch, cache, load
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec

pytestmark = pytest.mark.gpu

TORCH = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"f32": 1e-5, "f16": 1e-3, "bf16": 4e-3}  # by output type (DESIGN.md)
BUNDLES = os.environ.get("DEEPGEN_GPU_BUNDLES")


def rel_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float(torch.linalg.norm(got - want) / torch.linalg.norm(want))


def operands(spec: GemmSpec, device="cuda"):
    """Random a, b in the spec's layouts (transposed views for "T"), C poisoned with NaN."""
    def matrix(rows, cols, transposed):
        shape = (spec.batch, cols, rows) if transposed else (spec.batch, rows, cols)
        x = torch.randn(shape, device=device).to(TORCH[spec.dtype])
        x = x.transpose(1, 2) if transposed else x
        return x if spec.batch > 1 else x[0]

    a = matrix(spec.M, spec.K, spec.a_transposed)
    b = matrix(spec.K, spec.N, spec.b_transposed)
    c_shape = (spec.batch, spec.M, spec.N) if spec.batch > 1 else (spec.M, spec.N)
    c = torch.full(c_shape, float("nan"), device=device, dtype=TORCH[spec.out_dtype])
    return a, b, c


def expected(a, b, alpha=1.0, beta=0.0, c=None):
    r = alpha * (a.double() @ b.double())
    return r + beta * c.double() if beta else r


def assert_close(got, want, out_dtype: str):
    assert not torch.isnan(got).any(), "unwritten (NaN) elements in the output"
    err = rel_error(got, want)
    assert err < TOLERANCE[out_dtype], f"relative error {err:.2e}"


@pytest.fixture(autouse=True)
def clean_state(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPGEN_CACHE_DIR", str(tmp_path / "cache"))
    api._by_call.clear()
    api._by_spec.clear()
    cache.clear_memory()
    yield
    torch.cuda.synchronize()


SPECS = [  # dtype, out_dtype, layout, batch, split (workspace + two launches)
    ("f32", "f32", "NN", 1, False), ("f32", "f32", "NT", 3, False),
    ("f32", "f32", "TN", 1, True), ("f32", "f32", "TT", 2, True),
    ("f16", "f16", "NN", 1, False), ("f16", "f32", "TN", 2, True),
    ("bf16", "bf16", "NT", 1, False), ("bf16", "f32", "TT", 2, True),
]


@pytest.mark.parametrize("dtype, out_dtype, layout, batch, split", SPECS)
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (1.5, -0.5)])
def test_reference_kernel_is_correct(dtype, out_dtype, layout, batch, split, alpha, beta):
    spec = GemmSpec(M=77, N=50, K=96, batch=batch, dtype=dtype, out_dtype=out_dtype,
                    layout=layout)
    k = Kernel(reference_artifact(spec, split=split))
    a, b, c = operands(spec)
    if beta:
        c.copy_(torch.randn_like(c, dtype=torch.float32))
    want = expected(a, b, alpha, beta, c)
    assert k(a, b, c, alpha=alpha, beta=beta) is c
    torch.cuda.synchronize()
    assert_close(c, want, out_dtype)
    if not beta:
        fresh = k(a, b, alpha=alpha)
        assert fresh.shape == c.shape and fresh.dtype == c.dtype
        assert_close(fresh, want, out_dtype)


def test_large_dynamic_shared_memory_is_opted_in():
    spec = GemmSpec(M=64, N=64, K=32)
    k = Kernel(reference_artifact(spec, shared_bytes=100 * 1024))
    a, b, c = operands(spec)
    k(a, b, c)
    assert_close(c, expected(a, b), "f32")
    (attrs,) = k.driver_attributes(0)
    assert attrs["registers"] > 0 and attrs["shared_bytes"] == 100 * 1024


def test_wrong_arguments_on_gpu_raise_before_launch():
    spec = GemmSpec(M=32, N=32, K=32, layout="TN")
    k = Kernel(reference_artifact(spec))
    a, b, c = operands(spec)
    with pytest.raises(ValueError, match="a: expected strides"):
        k(a.contiguous(), b, c)
    with pytest.raises(TypeError, match="b: must be a CUDA tensor"):
        k(a, b.cpu(), c)
    with pytest.raises(TypeError, match="c: expected dtype"):
        k(a, b, c.half())
    with pytest.raises(ValueError, match="not 16-byte aligned"):
        k(a, b, torch.empty(32 * 32 + 1, device="cuda")[1:].view(32, 32))
    torch.cuda.synchronize()
    assert torch.isnan(c).all()  # nothing ran


def test_driver_errors_carry_the_error_name():
    bad = KernelArtifact(backend="cuda", target="sm_90a", binary=b"not a kernel image",
                         launches=[Launch("k", (1, 1, 1), (1, 1, 1), 0, ("A",))],
                         spec=GemmSpec(M=16, N=16, K=16).to_dict(), config={})
    a, b, _ = operands(GemmSpec(M=16, N=16, K=16))
    with pytest.raises(DriverError) as info:
        Kernel(bad)(a, b)
    assert info.value.call == "cuModuleLoadData" and info.value.name.startswith("CUDA_ERROR_")
    # A grid beyond the y limit (65535): cuLaunchKernel refuses it, the context survives.
    spec = GemmSpec(M=16, N=16, K=16)
    art = reference_artifact(spec)
    art.launches = [Launch(art.launches[0].entry, (1, 70000, 1), (16, 16, 1), 0,
                           art.launches[0].args)]
    with pytest.raises(DriverError, match="cuLaunchKernel.*CUDA_ERROR_INVALID_VALUE"):
        Kernel(art)(a, b)
    assert_close(Kernel(reference_artifact(spec))(a, b), expected(a, b), "f32")


def test_non_default_stream():
    spec = GemmSpec(M=128, N=96, K=64, layout="NT")
    k = Kernel(reference_artifact(spec))
    a, b, c = operands(spec)
    side = torch.cuda.Stream()
    k(a, b, c, stream=side)  # load the module first: loading may synchronize the device
    side.synchronize()
    c.fill_(float("nan"))
    side.wait_stream(torch.cuda.current_stream())
    # The stream argument: the launch queues behind a long sleep on `side`, so C is still
    # NaN when the default stream copies it out (torch's streams do not sync with it).
    with torch.cuda.stream(side):
        torch.cuda._sleep(1_000_000_000)  # about half a second
    k(a, b, c, stream=side)
    early = c.cpu()
    side.synchronize()
    assert torch.isnan(early).all()
    assert_close(c, expected(a, b), "f32")
    # The current stream inside torch.cuda.stream(), with C allocated by the kernel.
    cache.preload(reference_artifact(spec, target=api.target_of(a.get_device())))
    with torch.cuda.stream(side):
        fresh = k(a, b)
        via_api = deepgen.gemm(a, b)
    torch.cuda.current_stream().wait_stream(side)
    assert_close(fresh, expected(a, b), "f32")
    assert_close(via_api, expected(a, b), "f32")


@pytest.mark.parametrize("split", [False, True])
def test_cuda_graph_capture_and_replay(split):
    spec = GemmSpec(M=64, N=48, K=32, batch=2, dtype="bf16", out_dtype="f32", layout="TN")
    k = Kernel(reference_artifact(spec, split=split))
    # What the op and deepgen.gemm need: the same GEMM with a bf16 output.
    op_spec = GemmSpec(**dict(spec.to_dict(), out_dtype="bf16"))
    cache.preload(reference_artifact(op_spec, split=split, target=api.target_of(0)))
    a, b, c = operands(spec)
    k(a, b, c)  # warm-up: loads the module (not allowed during capture)
    torch.ops.deepgen.gemm(a, b, 2.0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        k(a, b, c, alpha=1.0)
        op_out = torch.ops.deepgen.gemm(a, b, 2.0)
        api_out = deepgen.gemm(a, b)
    for _ in range(2):
        a.copy_(torch.randn_like(a, dtype=torch.float32))
        c.fill_(float("nan"))
        op_out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert_close(c, expected(a, b), "f32")
        assert_close(op_out, expected(a, b, 2.0), "bf16")
        assert_close(api_out, expected(a, b), "bf16")


@pytest.mark.parametrize("mode", [None, "reduce-overhead"])
def test_torch_compile_runs_the_kernel(mode):
    spec = GemmSpec(M=64, N=32, K=48, dtype="f16")
    cache.preload(reference_artifact(spec, target=api.target_of(0)))
    a, b, _ = operands(spec)

    def f(x, y):
        return torch.relu(deepgen.gemm(x, y, alpha=0.5)) + 1

    compiled = torch.compile(f, fullgraph=True, mode=mode)
    for _ in range(3):
        got = compiled(a, b)
    assert_close(got, torch.relu(expected(a, b, 0.5)) + 1, "f16")


@pytest.mark.parametrize("layout", ["NN", "NT", "TN", "TT"])
def test_deepgen_gemm_with_preloaded_bundle(tmp_path, layout):
    spec = GemmSpec(M=40, N=24, K=56, batch=2, layout=layout)
    reference_artifact(spec, target=api.target_of(0)).save(tmp_path / "b")
    deepgen.runtime.preload(tmp_path / "b")
    a, b, c = operands(spec)
    assert deepgen.gemm(a, b, out=c) is c
    assert_close(c, expected(a, b), "f32")
    c2 = torch.randn_like(c)
    want = expected(a, b, 2.0, 0.5, c2)
    deepgen.gemm(a, b, out=c2, alpha=2.0, beta=0.5)
    assert_close(c2, want, "f32")


def test_threads_share_a_kernel():
    spec = GemmSpec(M=96, N=64, K=80)
    k = Kernel(reference_artifact(spec))
    errors = []

    def work():
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            for _ in range(20):
                a, b, c = operands(spec)
                k(a, b, c)
                stream.synchronize()
                errors.append(rel_error(c, expected(a, b)))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 80 and max(errors) < TOLERANCE["f32"]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_every_gpu_and_the_current_device_is_kept():
    from deepgen.runtime import _launcher

    spec = GemmSpec(M=64, N=64, K=64, dtype="bf16", out_dtype="f32")
    k = Kernel(reference_artifact(spec))
    modules = _launcher.loaded_modules()
    torch.cuda.set_device(0)
    for d in range(torch.cuda.device_count()):
        a, b, c = operands(spec, device=f"cuda:{d}")
        k(a, b, c)
        assert torch.cuda.current_device() == 0
        torch.cuda.synchronize(d)
        assert_close(c, expected(a, b), "f32")
    assert _launcher.loaded_modules() == modules + torch.cuda.device_count()
    a0, b0, _ = operands(spec, device="cuda:0")
    with pytest.raises(ValueError, match="one device"):
        k(a0, b0.to("cuda:1"))


def _bundle_dirs() -> list[Path]:
    if not BUNDLES:
        return []
    return sorted(p.parent for p in Path(BUNDLES).glob("*/kernel.json"))


@pytest.mark.skipif(not BUNDLES, reason="needs an NVIDIA GPU and DEEPGEN_GPU_BUNDLES=DIR "
                                          "(benchmarks/runtime_bundles.py --out DIR) to run")
@pytest.mark.parametrize("bundle", _bundle_dirs(), ids=lambda p: p.name)
def test_compiled_bundle_runs_correctly(bundle):
    k = load(bundle)
    spec = k.spec
    a, b, c = operands(spec)
    k(a, b, c)
    assert_close(c, expected(a, b), spec.out_dtype)
    c2 = torch.randn_like(c, dtype=torch.float32).to(c.dtype)
    want = expected(a, b, 0.5, 2.0, c2)
    k(a, b, c2, alpha=0.5, beta=2.0)
    assert_close(c2, want, spec.out_dtype)
