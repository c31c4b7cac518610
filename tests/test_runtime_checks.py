"""Kernel argument checking, on the CPU: every TypeError/ValueError is raised before a launch.

Kernels come from the reference artifact (no compiler needed). The checks are a pure function
of what each tensor is (deepgen.runtime.kernel.Facts), so CUDA tensors are described rather
than made; the call path itself runs on CPU tensors with the device check and the launch plan
replaced by recorders."""
from __future__ import annotations

import pytest
import torch

from deepgen.runtime import kernel as km
from deepgen.runtime.kernel import Facts, Kernel, check_operands
from deepgen.runtime.reference import reference_artifact
from deepgen.spec import GemmSpec
from runtime_fakes import facts_of, pretend_cpu_is_cuda


def make_kernel(**spec) -> Kernel:
    return Kernel(reference_artifact(GemmSpec(**{"M": 8, "N": 4, "K": 6, **spec})))


def check(kernel: Kernel, *tensors: Facts) -> None:
    check_operands(kernel._operands[:len(tensors)], tensors)


# -- the pure checks ------------------------------------------------------------------------

def test_valid_operands_pass():
    k = make_kernel(layout="TN", dtype="f16", out_dtype="f32")
    a = torch.empty(6, 8, dtype=torch.float16).t()  # logical 8 x 6, column-major
    b = torch.empty(6, 4, dtype=torch.float16)
    c = torch.empty(8, 4)
    check(k, facts_of(a), facts_of(b), facts_of(c))


def test_device_type_is_checked_first():
    k = make_kernel()
    bad_everything = Facts(torch.device("cpu"), torch.int8, (1,), (1,), 3)
    with pytest.raises(TypeError, match="a: must be a CUDA tensor, got device 'cpu'"):
        check(k, bad_everything, bad_everything)
    b_on_cpu = facts_of(torch.empty(6, 4), device=torch.device("cpu"))
    with pytest.raises(TypeError, match="b: must be a CUDA tensor"):
        check(k, facts_of(torch.empty(8, 6)), b_on_cpu)


def test_tensors_must_share_a_device():
    k = make_kernel()
    with pytest.raises(ValueError, match="one device.*a on cuda:0, b on cuda:1"):
        check(k, facts_of(torch.empty(8, 6)), facts_of(torch.empty(6, 4), torch.device("cuda", 1)))


@pytest.mark.parametrize("which, dtype", [(0, torch.float16), (1, torch.float64), (2, torch.bfloat16)])
def test_dtype_mismatch_is_a_type_error_naming_the_operand(which, dtype):
    k = make_kernel(dtype="f32", out_dtype="f32")
    tensors = [torch.empty(8, 6), torch.empty(6, 4), torch.empty(8, 4)]
    tensors[which] = tensors[which].to(dtype)
    name = "abc"[which]
    with pytest.raises(TypeError, match=f"{name}: expected dtype torch.float32, got {dtype}"):
        check(k, *map(facts_of, tensors))


@pytest.mark.parametrize("shapes, message", [
    (((8, 5), (6, 4)), r"a: expected shape \(8, 6\) or \(1, 8, 6\), got \(8, 5\)"),
    (((8, 6), (6, 4, 1)), r"b: expected shape \(6, 4\) or \(1, 6, 4\), got \(6, 4, 1\)"),
    (((2, 8, 6), (6, 4)), r"a: expected shape \(8, 6\) or \(1, 8, 6\), got \(2, 8, 6\)"),
    (((8, 6), (6, 4), (4, 8)), r"c: expected shape \(8, 4\) or \(1, 8, 4\), got \(4, 8\)"),
])
def test_shape_mismatch(shapes, message):
    k = make_kernel()
    with pytest.raises(ValueError, match=message):
        check(k, *(facts_of(torch.empty(s)) for s in shapes))


def test_unbatched_kernel_takes_2d_and_batch_of_one():
    k = make_kernel()
    check(k, facts_of(torch.empty(1, 8, 6)), facts_of(torch.empty(6, 4)),
          facts_of(torch.empty(1, 8, 4)))


def test_batched_kernel_needs_3d():
    k = make_kernel(batch=3)
    check(k, facts_of(torch.empty(3, 8, 6)), facts_of(torch.empty(3, 6, 4)))
    with pytest.raises(ValueError, match=r"a: expected shape \(3, 8, 6\), got \(8, 6\)"):
        check(k, facts_of(torch.empty(8, 6)), facts_of(torch.empty(3, 6, 4)))
    with pytest.raises(ValueError, match=r"b: expected shape \(3, 6, 4\), got \(2, 6, 4\)"):
        check(k, facts_of(torch.empty(3, 8, 6)), facts_of(torch.empty(2, 6, 4)))


def test_layout_mismatch_names_expected_and_actual_strides():
    k = make_kernel(layout="NT")  # b is column-major: a transposed view of a (4, 6) tensor
    a = torch.empty(8, 6)
    check(k, facts_of(a), facts_of(torch.empty(4, 6).t()))
    with pytest.raises(ValueError, match=r"b: expected strides \(1, 6\) \(layout 'T', "
                                         r"column-major.*got \(4, 1\)"):
        check(k, facts_of(a), facts_of(torch.empty(6, 4)))
    with pytest.raises(ValueError, match=r"a: expected strides \(6, 1\) \(layout 'N', "
                                         r"row-major\), got \(1, 8\)"):
        check(k, facts_of(torch.empty(6, 8).t()), facts_of(torch.empty(4, 6).t()))


def test_batched_strides_must_be_packed():
    k = make_kernel(batch=2, layout="TN")
    a = torch.empty(2, 6, 8).transpose(1, 2)  # packed column-major matrices
    b = torch.empty(2, 6, 4)
    check(k, facts_of(a), facts_of(b))
    gapped = torch.empty(2, 7, 4)[:, :6]  # batch stride 28, not 24
    with pytest.raises(ValueError, match=r"b: expected strides \(24, 4, 1\).*got \(28, 4, 1\)"):
        check(k, facts_of(a), facts_of(gapped))


def test_strides_of_size_one_dimensions_do_not_matter():
    k = make_kernel(M=1, layout="TN")  # a is 1 x 6: column-major and row-major coincide
    check(k, facts_of(torch.empty(1, 6)), facts_of(torch.empty(6, 4)))
    check(k, facts_of(torch.empty(6, 1).t()), facts_of(torch.empty(6, 4)))


def test_misaligned_pointer():
    k = make_kernel()
    a, b = torch.empty(8, 6), torch.empty(6, 4)
    with pytest.raises(ValueError, match=r"b: data_ptr 0x1008 is not 16-byte aligned"):
        check(k, facts_of(a), facts_of(b, ptr=0x1008))


# -- the call path ----------------------------------------------------------------------------

@pytest.fixture
def cpu_as_cuda(monkeypatch):
    return pretend_cpu_is_cuda(monkeypatch)


def test_call_launches_with_the_tensors_pointers(cpu_as_cuda):
    k = make_kernel(layout="NT")
    a, b, c = torch.randn(8, 6), torch.randn(4, 6).t(), torch.randn(8, 4)
    assert k(a, b, c, alpha=2.0, beta=0.5) is c
    assert cpu_as_cuda.calls == [(1234, a.data_ptr(), b.data_ptr(), c.data_ptr(), 0, 2.0, 0.5)]


def test_call_allocates_c_and_the_workspace(cpu_as_cuda):
    k = Kernel(reference_artifact(GemmSpec(M=8, N=4, K=6, batch=2, dtype="f16",
                                           out_dtype="bf16"), split=True))
    a = torch.randn(2, 8, 6).half()
    b = torch.randn(2, 6, 4).half()
    c = k(a, b)
    assert c.shape == (2, 8, 4) and c.dtype == torch.bfloat16 and c.is_contiguous()
    (stream, pa, pb, pc, pw, alpha, beta), = cpu_as_cuda.calls
    assert (stream, pa, pb, pc, alpha, beta) == (1234, a.data_ptr(), b.data_ptr(),
                                                 c.data_ptr(), 1.0, 0.0)
    assert pw != 0 and pw % 16 == 0


def test_tensors_allocated_for_a_side_stream_are_kept_for_it(cpu_as_cuda, monkeypatch):
    kept = []
    monkeypatch.setattr(km, "_keep_for_stream", lambda *args: kept.append(args))
    k = Kernel(reference_artifact(GemmSpec(M=8, N=4, K=6), split=True))
    a, b = torch.randn(8, 6), torch.randn(6, 4)
    c = k(a, b, stream=99)
    (stream, device, fresh, w), = kept
    assert (stream, fresh) == (99, c) and w.numel() == k.workspace_bytes
    k(a, b, c, stream=99)
    assert kept[1][2] is None  # the caller's c is the caller's business
    assert [call[0] for call in cpu_as_cuda.calls] == [99, 99]


def test_unbatched_3d_call_returns_3d(cpu_as_cuda):
    c = make_kernel()(torch.randn(1, 8, 6), torch.randn(6, 4))
    assert c.shape == (1, 8, 4)


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((torch.randn(8, 6), torch.randn(6, 4)), {"beta": 1.0}, ValueError,
     "beta: must be 0 when c is None"),
    ((torch.randn(8, 6).half(), torch.randn(6, 4)), {}, TypeError, "a: expected dtype"),
    ((torch.randn(8, 6), torch.randn(4, 6)), {}, ValueError, "b: expected shape"),
    ((torch.randn(6, 8).t(), torch.randn(6, 4)), {}, ValueError, "a: expected strides"),
    ((torch.randn(8, 6), torch.randn(6, 4), torch.randn(8, 4).half()), {}, TypeError,
     "c: expected dtype"),
    ((torch.randn(8, 6), torch.randn(6, 4), torch.randn(4, 8).t()), {}, ValueError,
     "c: expected strides"),
    ((torch.randn(8 * 6 + 1)[1:].view(8, 6), torch.randn(6, 4)), {}, ValueError,
     "a: data_ptr .* not 16-byte aligned"),
    ((torch.randn(8, 6).numpy(), torch.randn(6, 4)), {}, TypeError,
     "a: expected a torch.Tensor, got ndarray"),
])
def test_bad_calls_raise_before_launching(cpu_as_cuda, args, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_kernel()(*args, **kwargs)
    assert cpu_as_cuda.calls == []


def test_cpu_tensors_fail_on_the_device_check():
    k = make_kernel()
    with pytest.raises(TypeError, match="a: must be a CUDA tensor, got device 'cpu'"):
        k(torch.randn(8, 6), torch.randn(6, 4))
    with pytest.raises(TypeError, match="a: must be a CUDA tensor, got device 'meta'"):
        k(torch.empty(8, 6, device="meta"), torch.empty(6, 4, device="meta"))


# -- what a kernel reports --------------------------------------------------------------------

def test_kernel_properties():
    art = reference_artifact(GemmSpec(M=8, N=4, K=6, batch=2), split=True, shared_bytes=1024)
    art.resources = {  # as the compiler's driver parses them from ptxas -v
        "deepgen_ref_partial": {"registers": 40, "spill_stores": 0, "spill_loads": 0},
        "deepgen_ref_epilogue": {"registers": 12, "spill_stores": 16, "spill_loads": 16}}
    art.ir_stages = {"00-input": "module {}", "05-nvvm": "llvm"}
    k = Kernel(art)
    assert k.spec == GemmSpec(M=8, N=4, K=6, batch=2)
    assert k.config == {"reference": True, "split": True}
    assert k.artifact is art and k.target == "sm_90a"
    assert (k.registers, k.spills, k.shared_bytes) == (40, 16, 1024)
    assert k.workspace_bytes == 4 * 2 * 8 * 4
    assert ".entry deepgen_ref_partial" in k.ptx
    assert k.ir("05-nvvm") == "llvm"
    with pytest.raises(KeyError, match=r"'06-ptx'.*available stages: \['00-input', '05-nvvm'\]"):
        k.ir("06-ptx")
    assert "8x4x6" in repr(k)


def test_kernel_without_resources_reports_none():
    k = make_kernel()
    assert k.registers is None and k.spills is None
