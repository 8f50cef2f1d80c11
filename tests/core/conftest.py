"""Fixtures for core tests: a seeded demo province."""

from __future__ import annotations

import pytest

from feepay.demo_data import DemoProvince, seed


@pytest.fixture
def demo(fp) -> DemoProvince:  # noqa: ANN001
    return seed(fp)
