"""Hypothesis profiles of the reliability fuzz tests, chosen by the environment variable ``HYPOTHESIS_PROFILE``.

- ``ci`` (default): few examples, derandomized (the same inputs on every run), no deadline, no example database:
  every fuzz file runs in seconds on 2 cores and a failure reproduces exactly.
- ``long``: many random examples, for a hunt before a release
  (``experiments/reliability/fuzz_long.sh`` runs it with ``--hypothesis-show-statistics``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci", max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=SLOW_IS_FINE
)
settings.register_profile("long", max_examples=2000, deadline=None, database=None, suppress_health_check=SLOW_IS_FINE)
settings.load_profile(os.environ.get(PROFILE_VARIABLE, "ci"))
