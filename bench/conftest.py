"""Benchmarks reuse the ``impl`` fixture so every table shows ref beside ext."""

from __future__ import annotations

from simplefast.testing import impl_fixture

impl = impl_fixture()
