"""Shared test set-up: ``tests.*`` helpers are importable, and one hypothesis profile.

``from tests.property.graphs import modules`` gives any test the random-graph generator.
The ``optllm`` profile keeps property tests within the suite's time budget on a 2-core
machine; ``HYPOTHESIS_PROFILE=thorough`` runs many more examples. Under CI (``CI`` set) the
``ci`` profile derandomizes the search, so a landing is judged on the same examples every time;
developers' runs keep exploring new ones.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

settings.register_profile("optllm", max_examples=100, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("thorough", max_examples=1000, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", parent=settings.get_profile("optllm"), derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "optllm"))
