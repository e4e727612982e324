"""End-to-end model tests: offline, and torch on one thread.

On a 2-core machine torch's OpenMP pool (still spinning after an eager forward) and the
numpy BLAS threads of the reference executor fight over the cores; with torch on one thread
the reference GEMMs run about 3x faster and the timings stay stable.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def _torch_single_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
