"""Shared fixtures.  Building the front-end loads jieba's dictionary (about a second), so once."""

from __future__ import annotations

import pytest

from sambertd.frontend import Frontend


@pytest.fixture(scope="session")
def frontend() -> Frontend:
    return Frontend()
