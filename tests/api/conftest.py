"""Fixtures for the API tests."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from api import create_app
from api.memory import InMemorySource
from api_fixtures import make_source


@pytest.fixture
def source() -> InMemorySource:
    """Realistic in-memory registry contents (see api_fixtures.py)."""
    return make_source()


@pytest.fixture
def client(source: InMemorySource) -> TestClient:
    """TestClient over ``create_app(source)``."""
    return TestClient(create_app(source))
