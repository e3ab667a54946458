"""One typed configuration object, loaded from TOML, overridable by ``SAMBERTD_*`` variables.

Every setting lives in ``config/sambertd.toml`` with its default and a comment; the dataclasses
below are the single source of truth for names, types and defaults (a test keeps the two in
step).  An environment variable ``SAMBERTD_<SECTION>_<KEY>`` (e.g. ``SAMBERTD_SERVER_PORT=9000``)
wins over the file, so systemd drop-ins and Ansible can change one value without templating.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PATHS = (Path("/etc/sambertd/sambertd.toml"),)
ENV_PREFIX = "SAMBERTD_"
# Read by the CLI itself, not settings: the config file's path, and `sambertd jobs`'s daemon.
CLIENT_VARIABLES = frozenset({"SAMBERTD_CONFIG", "SAMBERTD_URL", "SAMBERTD_TOKEN"})
MAX_BODY_CEILING = 16 * 1024 * 1024  # server.max_body_bytes may be reloaded up to this
MAX_UNIT_CHARS = 48  # frontend.max_sentence_chars: what every engine can render in one go


class ConfigError(ValueError):
    """A setting that cannot be used; the message names it and says why."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 0  # 0: auto (workers_per_gpu per GPU in use, else 1 per engine.threads CPUs)
    workers_per_gpu: int = 4
    queue_size: int = 16
    request_timeout_s: float = 30.0
    max_body_bytes: int = 65536
    max_request_chars: int = 5000
    drain_timeout_s: float = 25.0
    hang_timeout_s: float = 60.0
    status_interval_s: float = 5.0
    node_name: str = ""  # "" = the host name; sent as X-Node so clients/tests see who served
    role_file: str = "/run/sambertd-vrrp/role"  # written by keepalived's notify script

    def worker_count(self, gpus: int = 0, threads: int = 1) -> int:
        """Concurrent syntheses: ``workers_per_gpu`` per GPU, else one per ``threads`` CPUs
        this process may run on (each call uses ``threads`` threads; systemd's CPUAffinity=
        and cpusets count, not the host's core total).  On CPU, calls side by side with one
        thread each make more speech per second than fewer calls with more threads: the
        graphs are too small to keep two threads busy (bench/load.py --config)."""
        if self.workers:
            return self.workers
        if gpus:
            return self.workers_per_gpu * gpus
        return max(1, len(os.sched_getaffinity(0)) // max(1, threads))


@dataclass(frozen=True)
class EngineConfig:
    engines: tuple[str, ...] = ("baker",)
    default_voice: str = "baker"
    threads: int = 1
    runtime: str = "auto"  # baker's vocoder: auto (OpenVINO, else LiteRT) | openvino | litert
    precision: str = "auto"  # OpenVINO: auto (bf16 where the CPU has it natively) | f32
    degrade: bool = True
    breaker_window_s: float = 60.0
    breaker_min_calls: int = 20
    breaker_error_rate: float = 0.05
    breaker_open_s: float = 30.0
    health_interval_s: float = 30.0


@dataclass(frozen=True)
class SambertConfig:
    model_dir: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    fp16: bool = True
    voices: tuple[str, ...] = ("zhitian_emo", "zhiyan_emo", "zhizhe_emo", "zhibei_emo")
    frontend: str = "auto"  # auto | builtin | ttsfrd (auto: ttsfrd when importable)


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    namespace: str = "sambertd"
    l1_max_bytes: int = 64 * 1024 * 1024
    l1_ttl_s: float = 600.0
    l2_ttl_s: float = 86400.0
    max_entry_bytes: int = 8 * 1024 * 1024
    sentinels: tuple[str, ...] = ()
    master_name: str = "sambertd"
    redis_url: str = ""
    password: str = ""
    sentinel_password: str = ""
    tls: bool = False
    tls_ca: str = ""
    read_from_replicas: bool = False
    op_timeout_s: float = 0.05
    connect_timeout_s: float = 0.1
    redis_retry_s: float = 2.0
    lock_ttl_s: float = 10.0
    lock_wait_s: float = 3.0


@dataclass(frozen=True)
class AuthConfig:
    enabled: bool = False  # off is allowed only on loopback binds (checked below)
    hs256_secret_file: str = ""  # kid "hs256"
    hs256_secrets: tuple[str, ...] = ()  # "kid=/path/secret", one per kid (rotation)
    public_keys: tuple[str, ...] = ()
    issuer: str = "sambertd"
    audience: str = "sambertd"
    leeway_s: float = 30.0
    allow: tuple[str, ...] = ()
    subject_networks: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    rate_per_subject: float = 50.0
    burst_per_subject: float = 100.0
    rate_per_ip: float = 50.0
    burst_per_ip: float = 100.0


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = False
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""  # set: clients must present a certificate signed by this CA


@dataclass(frozen=True)
class AuditConfig:
    enabled: bool = True
    directory: str = "/var/log/sambertd/audit"
    fsync_interval_s: float = 0.2
    retention_days: int = 180
    include_text: bool = False
    journal: bool = True


@dataclass(frozen=True)
class FrontendConfig:
    lexicon: str = ""
    max_sentence_chars: int = 32
    stream_first_chars: int = 10
    max_text_chars: int = 200_000
    sentence_pause_ms: int = 250
    sandhi: bool = True


@dataclass(frozen=True)
class AudioConfig:
    format: str = "wav"
    sample_rate: int = 0  # 0: the voice's native rate (the format's, for alaw/ulaw)


@dataclass(frozen=True)
class JobsConfig:
    enabled: bool = True
    max_chars: int = 200_000
    max_body_bytes: int = 2 * 1024 * 1024
    max_active_per_subject: int = 4
    concurrency: int = 1
    retention_s: float = 86400.0
    lease_s: float = 15.0
    scan_interval_s: float = 2.0
    store: str = "local"  # local | s3
    directory: str = "/var/lib/sambertd/jobs"
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "sambertd/"
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key_file: str = ""
    s3_tls_ca: str = ""


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = False


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    sambert: SambertConfig = field(default_factory=SambertConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    source: str = "defaults"

    def validate(self) -> Config:
        """Cross-field checks a type cannot express; returns self for chaining."""
        from sambertd.audio import SAMPLE_RATES, get_format

        problems = []
        if self.sambert.frontend not in ("auto", "builtin", "ttsfrd"):
            problems.append(
                f"sambert.frontend {self.sambert.frontend!r}: use auto, builtin or ttsfrd"
            )
        if not 0 < self.server.port < 65536:
            problems.append(f"server.port {self.server.port} is not a TCP port")
        if not self.engine.engines:
            problems.append("engine.engines is empty: name at least one engine")
        for name in ("request_timeout_s", "drain_timeout_s", "hang_timeout_s", "status_interval_s"):
            if getattr(self.server, name) <= 0:
                problems.append(f"server.{name} must be > 0")
        if self.server.workers < 0 or self.server.queue_size < 0:
            problems.append("server.workers and server.queue_size must be >= 0")
        if self.server.workers_per_gpu < 1:
            problems.append("server.workers_per_gpu must be >= 1")
        if not 1024 <= self.server.max_body_bytes <= MAX_BODY_CEILING:
            problems.append(f"server.max_body_bytes must be 1024..{MAX_BODY_CEILING}")
        if self.server.max_request_chars < 1:
            problems.append("server.max_request_chars must be >= 1")
        if not 0 <= self.engine.breaker_error_rate <= 1 or self.engine.breaker_min_calls < 1:
            problems.append("engine.breaker_error_rate must be 0..1, breaker_min_calls >= 1")
        if (
            min(
                self.engine.breaker_window_s,
                self.engine.breaker_open_s,
                self.engine.health_interval_s,
            )
            <= 0
        ):
            problems.append(
                "engine.breaker_window_s, breaker_open_s, health_interval_s must be > 0"
            )
        c = self.cache
        if (
            min(
                c.l1_ttl_s,
                c.l2_ttl_s,
                c.op_timeout_s,
                c.connect_timeout_s,
                c.redis_retry_s,
                c.lock_ttl_s,
            )
            <= 0
            or c.lock_wait_s < 0
            or c.l1_max_bytes < 0
        ):
            problems.append("cache: sizes, TTLs and timeouts must be positive")
        if c.sentinels and c.redis_url:
            problems.append("cache: set sentinels or redis_url, not both")
        for address in c.sentinels:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                problems.append(f"cache.sentinels: {address!r} is not host:port")
        problems.extend(self._security_problems())
        problems.extend(self._jobs_problems())
        device = self.sambert.device
        if not (device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:[0-9]+", device)):
            problems.append(f"sambert.device {device!r}: use auto, cpu, cuda or cuda:N")
        unknown = sorted(set(self.engine.engines) - {"baker", "sambert"})
        if unknown:
            problems.append(
                f"engine.engines: unknown engine(s) {', '.join(unknown)} "
                "(available: baker, sambert)"
            )
        if self.engine.threads < 1:
            problems.append("engine.threads must be >= 1")
        if self.engine.runtime not in ("auto", "openvino", "litert"):
            problems.append("engine.runtime must be auto, openvino or litert")
        if self.engine.precision not in ("auto", "f32"):
            problems.append("engine.precision must be auto or f32")
        if not 8 <= self.frontend.max_sentence_chars <= MAX_UNIT_CHARS:
            # The embedded FastSpeech2 decodes at most 2048 mel frames (25.6 s) per unit;
            # 48 characters read at speed 0.5 stay below that.
            problems.append(f"frontend.max_sentence_chars must be 8..{MAX_UNIT_CHARS}")
        if self.frontend.stream_first_chars < 2:
            problems.append("frontend.stream_first_chars must be >= 2")
        if self.audio.sample_rate and self.audio.sample_rate not in SAMPLE_RATES:
            problems.append(f"audio.sample_rate must be 0 or one of {SAMPLE_RATES}")
        try:
            get_format(self.audio.format)
        except ValueError as exc:
            problems.append(f"audio.format: {exc}")
        if problems:
            raise ConfigError(f"{self.source}: " + "; ".join(problems))
        return self

    def _jobs_problems(self) -> list[str]:
        j, problems = self.jobs, []
        if not 1 <= j.max_chars <= self.frontend.max_text_chars:
            problems.append("jobs.max_chars must be 1..frontend.max_text_chars")
        if not 1024 <= j.max_body_bytes <= MAX_BODY_CEILING:
            problems.append(f"jobs.max_body_bytes must be 1024..{MAX_BODY_CEILING}")
        if j.max_active_per_subject < 1 or j.concurrency < 1:
            problems.append("jobs.max_active_per_subject and jobs.concurrency must be >= 1")
        if min(j.retention_s, j.lease_s, j.scan_interval_s) <= 0:
            problems.append("jobs.retention_s, lease_s and scan_interval_s must be > 0")
        if j.store not in ("local", "s3"):
            problems.append(f"jobs.store {j.store!r}: use local or s3")
        if j.store == "local" and not j.directory:
            problems.append("jobs.store = local needs jobs.directory")
        if j.store == "s3" and not (j.s3_endpoint and j.s3_bucket):
            problems.append("jobs.store = s3 needs s3_endpoint and s3_bucket")
        if j.s3_endpoint and not j.s3_endpoint.startswith(("http://", "https://")):
            problems.append(f"jobs.s3_endpoint {j.s3_endpoint!r}: give http:// or https://")
        return problems

    def _security_problems(self) -> list[str]:
        problems = []
        if not self.auth.enabled and not is_loopback(self.server.host):
            problems.append(
                f"auth.enabled = false is allowed only on a loopback bind, not {self.server.host}"
            )
        a = self.auth
        if a.enabled and not (a.hs256_secret_file or a.hs256_secrets or a.public_keys):
            problems.append("auth.enabled needs hs256_secret_file, hs256_secrets or public_keys")
        problems.extend(_kid_problems(a))
        if self.tls.enabled and not (self.tls.cert_file and self.tls.key_file):
            problems.append("tls.enabled needs cert_file and key_file")
        if self.audit.enabled and not self.audit.directory:
            problems.append("audit.enabled needs audit.directory")
        if self.audit.retention_days < 1 or self.audit.fsync_interval_s <= 0:
            problems.append("audit.retention_days must be >= 1, fsync_interval_s > 0")
        return problems


def _kid_problems(a: AuthConfig) -> list[str]:
    """``kid=/path`` entries are well formed and every kid names one key only."""
    from sambertd.auth import LEGACY_HS256_KID, kid_entries

    kids = [LEGACY_HS256_KID] if a.hs256_secret_file else []
    try:
        for setting in ("hs256_secrets", "public_keys"):
            kids += [kid for kid, _ in kid_entries(getattr(a, setting), setting)]
    except ValueError as exc:
        return [str(exc)]
    twice = sorted({k for k in kids if kids.count(k) > 1})
    if twice:
        return [
            f"auth: key id(s) {', '.join(twice)} configured twice "
            f'(hs256_secret_file has kid "{LEGACY_HS256_KID}")'
        ]
    return []


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sections() -> dict[str, type[Any]]:
    """Section name → dataclass, e.g. ``{"server": ServerConfig, ...}``."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if f.name != "source"}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one value to its declared type; env strings are parsed here too."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
    elif hint in (int, float):
        if isinstance(value, str):
            try:
                return hint(value.strip())
            except ValueError:
                pass
        elif isinstance(value, hint | int) and not isinstance(value, bool):  # TOML 1 → 1.0
            return hint(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list):
            return tuple(_coerce(v, typing.get_args(hint)[0], where) for v in value)
    elif isinstance(hint, types.UnionType):
        return value
    name = getattr(hint, "__name__", str(hint))
    raise ConfigError(f"{where}: expected {name}, got {value!r}")


def _section(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    return cls(**{k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()})


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``SAMBERTD_SERVER_PORT=9000`` → ``{"server": {"port": "9000"}}``; unknown names fail."""
    out: dict[str, dict[str, str]] = {}
    names = sections()
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in CLIENT_VARIABLES:
            continue
        rest = key[len(ENV_PREFIX) :].lower()
        section = next((s for s in names if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(f"{key}: no such section (have: {', '.join(names)})")
        out.setdefault(section, {})[rest[len(section) + 1 :]] = value
    return out


def find_path(path: str | Path | None, env: Mapping[str, str]) -> Path | None:
    """Explicit path, else ``$SAMBERTD_CONFIG``, else /etc/sambertd/sambertd.toml if present."""
    if path:
        return Path(path)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    return next((p for p in DEFAULT_PATHS if p.is_file()), None)


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults ← TOML file ← environment, then validated."""
    env = os.environ if env is None else env
    found = find_path(path, env)
    raw: dict[str, Any] = {}
    if found is not None:
        try:
            raw = tomllib.loads(found.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{found}: cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{found}: not valid TOML: {exc}") from exc
    source = str(found) if found else "defaults"
    names = sections()
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}")
    for section, values in env_overrides(env).items():
        raw.setdefault(section, {}).update(values)
    built = {
        name: _section(cls, raw.get(name, {}), f"{source}: [{name}]") for name, cls in names.items()
    }
    return Config(**built, source=source).validate()
