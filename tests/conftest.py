import importlib
import os

import pytest

# Offline, always: a test that tried the network would hang or fail here and in CI.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# `dtype: auto` on the CPU is float32 in the tests on every machine, as the pixel tolerances assume (whether bf16
# is faster is timed per machine: tests/test_generate.py tests that probe by unsetting this)
os.environ["DIFFLAB_CPU_DTYPE"] = "float32"


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("DIFFLAB_SLOW") == "1"
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="slow (real weights or minutes of training); set DIFFLAB_SLOW=1"))
        if "gpu" in item.keywords and not cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session", autouse=True)
def difflab_cache(tmp_path_factory):
    """Tiny models are built once per test session into a private cache (the build itself is under test)."""
    path = tmp_path_factory.mktemp("difflab-cache")
    os.environ["DIFFLAB_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def sd(difflab_cache):
    import difflab
    return difflab.load("tiny", progress=False)


@pytest.fixture(scope="session")
def sd_inpaint(difflab_cache):
    import difflab
    return difflab.load("tiny-inpaint", task="inpaint", progress=False)


@pytest.fixture(scope="session")
def photo():
    from difflab.samples import sample_photo
    return sample_photo("china", 64)


@pytest.fixture(scope="session")
def photo_file(difflab_cache):
    from difflab.samples import sample_photo_file
    return sample_photo_file("china", 64)


@pytest.fixture
def tiny_everywhere(sd, monkeypatch):
    """Every `pipelines.load` made by the code under test returns the session's tiny model (loaded once)."""
    monkeypatch.setattr(importlib.import_module("difflab.pipelines"), "load", lambda *a, **k: sd)
    return sd
