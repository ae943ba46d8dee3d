import pytest
import torch

import cuteattn.interface


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _default_backend(monkeypatch):
    """Every test starts from the default backend choice, whatever the shell has set."""
    monkeypatch.delenv(cuteattn.interface.BACKEND_ENV, raising=False)

