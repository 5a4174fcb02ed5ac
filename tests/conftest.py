"""Fixtures shared by every test: ``impl`` runs a test once per twin."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, settings

from simplefast.testing import impl_fixture, load_impl

impl = impl_fixture()

# CI: no example database (fresh clone), no per-example deadline (shared,
# noisy machines). "dev" keeps the database for local shrinking sessions.
settings.register_profile(
    "ci",
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    return load_impl("ref")


@pytest.fixture(scope="session")
def ext() -> SimpleNamespace:
    return load_impl("ext")
