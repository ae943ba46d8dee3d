import faulthandler
import os
import sys
import threading

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


# A GPU test still running after this long has a hung kernel: a pipeline out of step never returns.
HANG_SECONDS = float(os.environ.get("CUTEATTN_TEST_HANG_SECONDS", 300))


@pytest.fixture(autouse=True)
def _hang_watchdog(request):
    """Ends the process of a GPU test that hangs, after naming it and dumping the stacks: the run then reports
    that test as crashed and goes on (under xdist a new worker takes the tests left), where a hung kernel would
    otherwise hold the run until its timeout and leave no verdict at all."""
    if "gpu" not in request.keywords or not torch.cuda.is_available():
        yield
        return

    def expire():
        sys.stderr.write(f"\n{request.node.nodeid}: still running after {HANG_SECONDS:.0f} s; a hung kernel\n")
        faulthandler.dump_traceback(sys.stderr)
        sys.stderr.flush()
        os._exit(70)

    timer = threading.Timer(HANG_SECONDS, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
