"""Shared fixtures.  Building the front-end loads jieba's dictionary (about a second), so once;
a Sambert model directory with random weights takes seconds to build, so once too."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sambertd.frontend import Frontend

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO.parent / "shared" / "vendor" / "KAN-TTS-66202d0.tar.gz"


@pytest.fixture(scope="session")
def frontend() -> Frontend:
    """Warm, as the daemon's is: jieba's dictionary and the pinyin tables load on first use
    (a second here, several on a slow runner), which would otherwise land in the first
    test's time limits (``test_fuzz_frontend``'s per-call bound, Hypothesis deadlines)."""
    built = Frontend()
    built.sentences("你好。")  # what Synthesizer.warm_up does
    return built


def real_sambert_missing() -> str | None:
    """Why the real modelscope + KAN-TTS code cannot run here, or None when it can."""
    if not VENDOR.is_file():
        return f"no {VENDOR} (KAN-TTS source): the real Sambert code is not installed"
    for module in ("torch", "modelscope", "kantts"):
        if importlib.util.find_spec(module) is None:
            return f"python module {module} is missing: run `make install-sambert`"
    return None


@pytest.fixture(scope="session")
def kantts_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory in ModelScope's layout with two voices (zhitian_emo, zhida): KAN-TTS's
    own configs, small layer counts, random weights (tests/kantts_model.py)."""
    reason = real_sambert_missing()
    if reason:
        pytest.skip(reason)
    from tests.kantts_model import build_model_dir

    return build_model_dir(tmp_path_factory.mktemp("kantts") / "model")
