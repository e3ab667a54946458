"""Everything the daemon builds from one configuration, as one object a reload can replace.

A :class:`Runtime` holds the synthesizer (front-end + engine ladder), the worker pool, the cache,
the access gate, the audit log and the TLS context, all made from the same :class:`Config`.
A request takes the runtime current when it arrives and uses it to the end, so it never mixes
the parts of two configurations.  A reload builds a complete new runtime off the event loop —
reusing each part whose settings did not change (a loaded GPU model, the Redis pool, the L1
contents, the audit chain) — then swaps it in whole, or refuses and keeps the old one.  The
parts the new runtime did not take are closed once the last request using them has finished.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sambertd.audit import AuditLog
from sambertd.auth import Gate
from sambertd.cache import Cache
from sambertd.config import Config
from sambertd.engines import create
from sambertd.listener import tls_context
from sambertd.metrics import Metrics
from sambertd.pool import WorkerPool
from sambertd.synth import Rung, Synthesizer, make_rung

log = logging.getLogger(__name__)

# What only a restart can change: the address the sockets are bound to.
RESTART_ONLY = (("server", "host"), ("server", "port"))


@dataclass
class Runtime:
    config: Config
    synthesizer: Synthesizer
    pool: WorkerPool
    cache: Cache
    gate: Gate
    audit: AuditLog | None
    tls: ssl.SSLContext | None
    users: int = 0  # requests that took this runtime and have not finished

    def parts(self) -> tuple[object, ...]:
        """What a newer runtime may share with this one (and must then stay open)."""
        return (self.pool, self.cache, self.audit, *self.synthesizer.engines)


def restart_needed(old: Config, new: Config) -> list[str]:
    """The settings that differ between ``old`` and ``new`` but cannot change on reload."""
    return [
        f"{section}.{key}"
        for section, key in RESTART_ONLY
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)
    ]


def _rungs(config: Config, previous: Runtime | None) -> list[Rung]:
    """The ladder for ``config``.  An engine whose identity (settings, model files) is
    unchanged stays loaded; it keeps its breaker too unless the breaker settings changed.
    One that could not load is tried again (the operator may have fixed what was missing)."""
    rungs_before = previous.synthesizer.rungs if previous else []
    kept = {r.engine.identity(): r for r in rungs_before if r.warm}
    same_breakers = previous is not None and previous.config.engine == config.engine
    rungs = []
    for name in config.engine.engines:
        engine = create(name, config)
        old = kept.get(engine.identity())
        if old is None:
            rungs.append(make_rung(engine, config))
        elif same_breakers:
            rungs.append(old)
        else:
            rungs.append(dataclasses.replace(make_rung(old.engine, config), warm=old.warm))
    return rungs


def build(
    config: Config,
    metrics: Metrics,
    previous: Runtime | None = None,
    on_unit: Callable[[str], None] | None = None,
) -> Runtime:
    """A complete runtime for ``config``, engines loaded and warm.  Blocking (model loads,
    key and certificate files): run it in a thread.  Raises on anything unusable, having
    started nothing that outlives the failure."""
    synthesizer = Synthesizer(config, rungs=_rungs(config, previous), on_unit=on_unit)
    tls = tls_context(config.tls)  # the quick checks first: a bad file fails before loading
    cache = (
        previous.cache
        if previous is not None and previous.config.cache == config.cache
        else Cache(config.cache, metrics)
    )
    gate = Gate(config.auth, cache.l2, config.cache.namespace)  # re-reads the key files
    if previous is not None:
        gate.inherit(previous.gate)
    try:
        synthesizer.warm_up()
        workers = config.server.worker_count(synthesizer.gpus(), config.engine.threads)
        synthesizer.provision(workers)
        audit = _audit(config, previous)
    except BaseException:
        _unload_new(synthesizer, previous)
        raise
    pool = (
        previous.pool
        if previous is not None
        and (previous.pool.workers, previous.pool.queue_size) == (workers, config.server.queue_size)
        else WorkerPool(workers, config.server.queue_size)
    )
    return Runtime(config, synthesizer, pool, cache, gate, audit, tls)


def _unload_new(synthesizer: Synthesizer, previous: Runtime | None) -> None:
    """A failed build frees the models it loaded (not those it shares with ``previous``)."""
    old = {id(r.engine) for r in previous.synthesizer.rungs} if previous else set()
    for rung in synthesizer.rungs:
        if id(rung.engine) not in old:
            rung.engine.unload()


def _audit(config: Config, previous: Runtime | None) -> AuditLog | None:
    """The same log (one hash chain) while ``[audit]`` is unchanged; else a new one."""
    if previous is not None and previous.config.audit == config.audit:
        return previous.audit
    a = config.audit
    if not a.enabled:
        return None
    log_ = AuditLog(
        Path(a.directory),
        fsync_interval_s=a.fsync_interval_s,
        retention_days=a.retention_days,
        journal=a.journal,
    )
    log_.start_sync()  # creates the directory and continues its chain; raises if it cannot
    return log_


async def retire(old: Runtime, current: Callable[[], list[Runtime]]) -> None:
    """Once no request uses ``old`` any more, close the parts no live runtime shares."""
    while old.users > 0:
        await asyncio.sleep(0.05)
    await close(old, keep=current())


async def close(runtime: Runtime, keep: Sequence[Runtime] = ()) -> None:
    """Close ``runtime``'s pool, cache, audit log and engines, except those in ``keep``."""
    shared = {id(part) for other in keep if other is not runtime for part in other.parts()}
    if id(runtime.pool) not in shared:
        runtime.pool.shutdown()
    if id(runtime.cache) not in shared:
        await runtime.cache.close()
    if runtime.audit is not None and id(runtime.audit) not in shared:
        await runtime.audit.close()
    for engine in runtime.synthesizer.engines:
        if id(engine) not in shared:
            await asyncio.to_thread(engine.unload)
