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
