"""Shared fixtures: temporary stores."""

from __future__ import annotations

import pytest

from vecstore.store import Store


@pytest.fixture
def store(tmp_path):
    with Store.create(tmp_path / "store") as s:
        yield s
