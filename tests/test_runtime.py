"""Building a runtime from a config and rebuilding it on reload, in-process with the real
baker engine: what is reused, what is new, what a retired runtime closes."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sambertd import runtime
from sambertd.config import AuditConfig, Config, EngineConfig, FrontendConfig, ServerConfig
from sambertd.metrics import Metrics


def config(tmp_path: Path, **sections: object) -> Config:
    base = Config(audit=AuditConfig(directory=str(tmp_path / "audit")))
    return dataclasses.replace(base, **sections)  # type: ignore[arg-type]


def test_a_reload_keeps_what_did_not_change(tmp_path: Path) -> None:
    metrics = Metrics()
    old = runtime.build(config(tmp_path), metrics)
    fresh = runtime.build(
        config(tmp_path, frontend=FrontendConfig(sentence_pause_ms=300)), metrics, old
    )
    try:
        assert fresh.synthesizer is not old.synthesizer  # a new front-end...
        assert fresh.synthesizer.rungs[0] is old.synthesizer.rungs[0]  # ...the same engine
        assert (fresh.pool, fresh.cache, fresh.audit) == (old.pool, old.cache, old.audit)
        assert fresh.synthesizer.frontend.fingerprint != old.synthesizer.frontend.fingerprint
    finally:
        asyncio.run(runtime.close(fresh))


def test_a_changed_engine_is_loaded_anew_and_the_old_one_freed(tmp_path: Path) -> None:
    metrics = Metrics()
    old = runtime.build(config(tmp_path), metrics)
    old_engine = old.synthesizer.engines[0]
    assert old_engine._idle  # type: ignore[attr-defined]  # provisioned interpreter pairs
    fresh = runtime.build(
        config(tmp_path, engine=EngineConfig(threads=2), server=ServerConfig(workers=3)),
        metrics,
        old,
    )
    new_engine = fresh.synthesizer.engines[0]
    assert new_engine is not old_engine and new_engine.fingerprint != old_engine.fingerprint
    assert fresh.pool is not old.pool and fresh.pool.workers == 3
    assert len(new_engine._idle) == 3  # type: ignore[attr-defined]  # one warm pair a worker

    async def retire() -> None:
        await runtime.retire(old, lambda: [fresh])

    asyncio.run(retire())
    assert old_engine._idle == []  # type: ignore[attr-defined]  # its interpreters freed
    assert new_engine._idle  # type: ignore[attr-defined]  # the live one's untouched
    asyncio.run(runtime.close(fresh))


def test_restart_only_settings_are_named() -> None:
    old = Config()
    assert runtime.restart_needed(old, old) == []
    moved = dataclasses.replace(old, server=ServerConfig(host="::1", port=9000))
    assert runtime.restart_needed(old, moved) == ["server.host", "server.port"]


def test_an_engine_that_could_not_load_is_tried_again_on_reload(tmp_path: Path) -> None:
    """sambert cannot load here (its checkpoints are one byte, or torch is missing): a
    reload must not keep that failure forever just because its settings did not change —
    the operator may have fixed what was wrong."""
    from tests.modeldir import make_model_dir

    cfg = config(
        tmp_path,
        engine=EngineConfig(engines=("sambert", "baker"), default_voice="zhitian_emo"),
    )
    cfg = dataclasses.replace(
        cfg,
        sambert=dataclasses.replace(cfg.sambert, model_dir=str(make_model_dir(tmp_path / "m"))),
    )
    metrics = Metrics()
    old = runtime.build(cfg, metrics)
    assert old.synthesizer.rungs[0].breaker.state == "open"  # it cannot load
    fresh = runtime.build(cfg, metrics, old)
    try:
        assert fresh.synthesizer.rungs[0] is not old.synthesizer.rungs[0]  # tried again
        assert fresh.synthesizer.rungs[1] is old.synthesizer.rungs[1]  # baker kept
    finally:
        asyncio.run(runtime.close(fresh))
