import pytest


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` on machines where torch sees no CUDA device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch  # only when some collected test needs a GPU

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (none found)")
    for item in gpu_items:
        item.add_marker(skip)


# Shared by the tests of deepgen.gemm on machines without a GPU (test_api, test_model_api,
# test_dynamic_m): imports stay inside the fixtures (GPU tests collect without them).

@pytest.fixture
def cpu_gpu(monkeypatch):
    """CPU tensors accepted as CUDA tensors of an sm_90a device; returns the plans made."""
    from runtime_fakes import pretend_kernels_run_on_cpu

    from deepgen import api

    monkeypatch.setattr(api, "_check_devices", lambda tensors: None)
    monkeypatch.setattr(api, "target_of", lambda device: "sm_90a")
    return pretend_kernels_run_on_cpu(monkeypatch)


@pytest.fixture
def no_compiler(monkeypatch):
    """deepgen.compiler cannot be imported (a host without MLIR)."""
    import sys

    import deepgen

    monkeypatch.setitem(sys.modules, "deepgen.compiler", None)  # import raises ImportError
    monkeypatch.delattr(deepgen, "compiler", raising=False)
