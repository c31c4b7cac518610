"""TMA on a real GPU: by-value descriptors, mbarriers and cluster launches through the runtime.

The probe kernels of tests/gpu/tma_probe.py copy a 2-D tensor A box by box: TMA
(cp.async.bulk.tensor, from the descriptor the launcher encodes with cuTensorMapEncodeTiled and
passes as a __grid_constant__ parameter) into shared memory, an mbarrier wait, then 16-byte
stores to `out` (A padded to whole boxes). `out` must hold A bit for bit where A is, and zeros
around it (TMA zero-fills out-of-bounds elements); it starts as NaN, so a box never written
fails. That proves the encode's arguments (dtype, dims and strides innermost first, box,
swizzle), the 128-byte parameter, the mbarrier transaction count and, with a (2, 1, 1)
cluster, cuLaunchKernelEx.

The kernels come from `$DEEPGEN_TEST_BUNDLE/tma/<variant>` (written by
`python tests/gpu/make_bundle.py DIR [--only tma]` on a machine with MLIR), or are compiled
here when MLIR is importable. On the GPU host, with the launcher built
(`pip install --no-build-isolation --no-deps -e .`):

    DEEPGEN_TEST_BUNDLE=DIR python -m pytest tests/gpu/test_tma_gpu.py -v
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

import tma_probe  # tests/gpu is on sys.path (conftest.py)

pytestmark = pytest.mark.gpu

BUNDLE_ENV = "DEEPGEN_TEST_BUNDLE"
NAMES = list(tma_probe.VARIANTS)


@pytest.fixture(scope="module")
def artifacts():
    """variant name -> KernelArtifact, from the bundle or the compiler (loaded on first use)."""
    from deepgen.runtime.artifact import KernelArtifact

    env = os.environ.get(BUNDLE_ENV)
    if env:
        root = Path(env) / "tma"
        if not root.is_dir():
            pytest.fail(f"{root}: no TMA probes in the bundle (made before they existed?): "
                        f"rebuild it with `python tests/gpu/make_bundle.py {env} --only tma`")
    elif importlib.util.find_spec("mlir") is None:
        pytest.skip(f"no TMA probes: set {BUNDLE_ENV}=DIR to a bundle made by "
                    f"`python tests/gpu/make_bundle.py DIR --only tma` on a machine with MLIR")
    cache = {}

    def get(name: str):
        if name not in cache:
            if env:
                path = root / name
                if not (path / "kernel.json").exists():
                    pytest.fail(f"{path}: not in the bundle: rebuild it with "
                                f"`python tests/gpu/make_bundle.py {env} --only tma`")
                cache[name] = KernelArtifact.load(path)
            else:
                cache[name] = tma_probe.compile_probe(tma_probe.VARIANTS[name])
        return cache[name]

    return get


def _torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[name]


def _bits(t):
    import torch

    return t.view(torch.int16 if t.element_size() == 2 else torch.int32)


class Probe:
    """One probe kernel planned for one tensor size (M rows, N columns) on the current GPU."""

    def __init__(self, artifact, variant: tma_probe.Variant, M: int, N: int):
        import torch

        from deepgen.runtime import _launcher

        self.variant, self.M, self.N = variant, M, N
        launches, tma, self.pointer_names = tma_probe.plan_inputs(artifact, {"M": M, "N": N})
        self.grid = launches[0][1]
        self.plan = _launcher.LaunchPlan("cuda", artifact.binary, torch.cuda.current_device(),
                                         launches, tma)
        self.out_shape = tma_probe.out_shape(variant, {"M": M, "N": N})

    def input(self, seed: int = 0):
        import torch

        g = torch.Generator(device="cuda").manual_seed(seed)
        return torch.randn(self.M, self.N, device="cuda", generator=g).to(
            _torch_dtype(self.variant.dtype))

    def run(self, a, out=None):
        """Launch on torch's current stream; returns `out` (fresh and NaN-poisoned if None)."""
        import torch

        if out is None:
            out = torch.full(self.out_shape, float("nan"), device="cuda", dtype=a.dtype)
        tensors = {"A": a, "out": out}
        self.plan.launch_args(torch.cuda.current_stream().cuda_stream,
                              [tensors[n].data_ptr() for n in self.pointer_names], [])
        torch.cuda.synchronize()
        return out

    def check(self, a, out) -> None:
        """out[:M, :N] == a bit for bit; zeros (TMA's out-of-bounds fill) elsewhere."""
        M, N = self.M, self.N
        assert tuple(out.shape) == self.out_shape
        assert not out.isnan().any(), \
            f"{int(out.isnan().sum())} elements never written (NaN): a box not copied"
        inside = _bits(out[:M, :N]) == _bits(a)
        if not bool(inside.all()):
            bad = (~inside).nonzero()[:8].tolist()
            raise AssertionError(f"{int((~inside).sum())} of {M * N} elements differ from A, "
                                 f"first at (row, col) {bad}: encode arguments or the "
                                 f"shared-memory layout (swizzle {self.variant.swizzle}) wrong")
        pad = out.clone()
        pad[:M, :N] = 0
        assert not bool(_bits(pad).any()), "non-zero elements outside A (no zero fill?)"


def _sizes(v: tma_probe.Variant, partial: bool) -> tuple[int, int]:
    rows, cols = v.box
    if not partial:
        return 4 * rows, 6 * cols  # whole boxes (6: a multiple of the cluster's 2)
    # ragged edges in both dimensions; N keeps rows a multiple of 16 bytes (TMA's stride rule)
    return 2 * rows + 5, 2 * cols + 24


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("partial", [False, True], ids=["whole-boxes", "partial-edge"])
def test_probe_copies_the_tensor(artifacts, name, partial):
    v = tma_probe.VARIANTS[name]
    p = Probe(artifacts(name), v, *_sizes(v, partial))
    a = p.input()
    p.check(a, p.run(a))
    assert p.plan.tma_encodes == 1


@pytest.mark.parametrize("name", NAMES)
def test_tensor_smaller_than_one_box(artifacts, name):
    v = tma_probe.VARIANTS[name]
    p = Probe(artifacts(name), v, 5, 8 if v.dtype != "f32" else 4)
    a = p.input(3)
    p.check(a, p.run(a))


def test_cluster_launch(artifacts):
    """cuLaunchKernelEx with a (2, 1, 1) cluster; in the partial case the grid is rounded up
    to whole clusters, so the last CTA's box lies wholly outside A (zero-filled, skipped)."""
    name = "bf16_sw128_cluster2"
    v = tma_probe.VARIANTS[name]
    art = artifacts(name)
    assert art.launches[0].cluster == (2, 1, 1)
    for partial in (False, True):
        p = Probe(art, v, *_sizes(v, partial))
        assert p.grid[0] % 2 == 0
        a = p.input(1)
        p.check(a, p.run(a))
    assert p.grid[0] * v.box[1] >= p.N + v.box[1]  # a CTA with nothing in bounds


@pytest.mark.parametrize("name", ["bf16_sw128", "bf16_sw128_cluster2"])
def test_descriptor_is_encoded_once_per_tensor(artifacts, name):
    import torch

    v = tma_probe.VARIANTS[name]
    p = Probe(artifacts(name), v, *_sizes(v, True))
    a = p.input(5)
    out = p.run(a)
    p.check(a, out)
    p.run(a, out)  # the same tensor: the cached descriptor
    assert p.plan.tma_encodes == 1
    a.copy_(p.input(6))  # new contents at the same address: still the cached descriptor
    p.check(a, p.run(a))
    assert p.plan.tma_encodes == 1
    b = p.input(7)  # another tensor: a new descriptor
    p.check(b, p.run(b))
    assert p.plan.tma_encodes == 2
    p.check(a, p.run(a))  # back to the first: cached
    assert p.plan.tma_encodes == 2
    torch.cuda.synchronize()


def test_encode_rejects_a_row_stride_not_a_multiple_of_16_bytes(artifacts):
    """bf16 rows of 36 elements (72 bytes): cuTensorMapEncodeTiled fails and the launcher
    says so (DriverError naming the call) rather than launching a garbage descriptor."""
    import torch

    from deepgen.runtime import DriverError

    v = tma_probe.VARIANTS["bf16_sw0"]
    p = Probe(artifacts("bf16_sw0"), v, 64, 36)
    with pytest.raises(DriverError) as e:
        p.run(p.input())
    assert e.value.call == "cuTensorMapEncodeTiled", str(e.value)
    assert p.plan.tma_encodes == 0
    torch.cuda.synchronize()


def test_driver_sees_the_static_shared_memory(artifacts):
    for name in NAMES:
        v = tma_probe.VARIANTS[name]
        p = Probe(artifacts(name), v, *_sizes(v, False))
        attrs = p.plan.attributes()[0]
        assert attrs["static_shared_bytes"] >= v.box_bytes + 8, attrs  # the box + the mbarrier
        assert attrs["local_bytes"] == 0, attrs
