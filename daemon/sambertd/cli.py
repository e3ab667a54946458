"""The ``sambertd`` command: what operators type (synth, voices, frontend, check)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sambertd import __version__, audio
from sambertd.config import Config, ConfigError, load
from sambertd.engines import EngineError, Prosody
from sambertd.frontend import FrontendError
from sambertd.frontend.lexicon import LexiconError

if TYPE_CHECKING:
    from sambertd.auth import Key

USER_ERRORS = (ConfigError, EngineError, FrontendError, LexiconError, ValueError, OSError)


def _config(ctx: click.Context) -> Config:
    cfg: Config = ctx.obj["config"]
    return cfg


def _fail(exc: BaseException) -> None:
    """One readable line on stderr and exit status 1 — never a traceback for user errors."""
    click.echo(f"sambertd: error: {exc}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config (default: $SAMBERTD_CONFIG, then /etc/sambertd/sambertd.toml).",
)
@click.version_option(__version__, prog_name="sambertd")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """sambertd: Chinese text-to-speech daemon and tools."""
    try:
        ctx.obj = {"config": load(config_path), "path": config_path}
    except ConfigError as exc:
        _fail(exc)


def read_text(text: str | None, infile: str | None) -> str:
    """TEXT or the file ``-i`` names ('-': stdin), exactly one of them (``synth``, ``jobs``)."""
    if (text is None) == (infile is None):
        raise click.UsageError("give the text as an argument or with -i FILE (not both)")
    if infile is not None:
        stream = sys.stdin if infile == "-" else open(infile, encoding="utf-8-sig")  # noqa: SIM115
        with stream:
            return stream.read()
    assert text is not None
    return text


@main.command()
@click.argument("text", required=False)
@click.option(
    "-i",
    "--input",
    "infile",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read the text from a UTF-8 file ('-' for stdin).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to write the audio ('-' for stdout).",
)
@click.option("--voice", default="", help="Voice id (default: engine.default_voice).")
@click.option("--emotion", default="neutral", show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True, help="0.5–2.0")
@click.option("--pitch", type=float, default=1.0, show_default=True, help="0.5–2.0")
@click.option("--volume", type=float, default=1.0, show_default=True, help="0.0–2.0")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(audio.FORMATS)),
    default=None,
    help="Audio format (default: audio.format).",
)
@click.option(
    "--sample-rate",
    type=click.Choice([str(r) for r in audio.SAMPLE_RATES]),
    default=None,
    help="Output rate (default: the voice's own).",
)
@click.option("--ssml", is_flag=True, help="The text is SSML (default: if it starts with <speak).")
@click.option(
    "--srt",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write SRT subtitles (cues cut at clause ends) to this file.",
)
@click.option(
    "--vtt",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write WebVTT subtitles to this file.",
)
@click.option(
    "--timestamps",
    "stamps_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Also write each sentence's and character's start/end (JSON) to this file.",
)
@click.pass_context
def synth(
    ctx: click.Context,
    text: str | None,
    infile: str | None,
    output: str,
    voice: str,
    emotion: str,
    speed: float,
    pitch: float,
    volume: float,
    fmt: str | None,
    sample_rate: str | None,
    ssml: bool,
    srt: str | None,
    vtt: str | None,
    stamps_path: str | None,
) -> None:
    """Synthesize TEXT (or -i FILE) to an audio file, with subtitles if asked."""
    from sambertd.synth import Synthesizer
    from sambertd.types import Request

    cfg = _config(ctx)
    try:
        request = Request(
            text=read_text(text, infile),
            voice=voice,
            emotion=emotion,
            prosody=Prosody(speed=speed, pitch=pitch, volume=volume),
            format=fmt or cfg.audio.format,
            sample_rate=int(sample_rate) if sample_rate else (cfg.audio.sample_rate or None),
            ssml=True if ssml else None,
        )
        synthesizer = Synthesizer(cfg)
        timed = bool(srt or vtt or stamps_path)
        route = synthesizer.route(request, origins=timed)
        with _progress() as progress:
            result = synthesizer.render(route, on_sentence=progress)
        _write(output, result.audio)
        if timed:
            _write_timing(route, result, srt, vtt, stamps_path)
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(
        f"{output}: {result.duration:.2f} s, {result.sample_rate} Hz {result.format.name}, "
        f"{result.sentences} sentence(s), voice {result.voice}",
        err=True,
    )


def _write_timing(
    route: Any, result: Any, srt: str | None, vtt: str | None, stamps_path: str | None
) -> None:
    from sambertd import subtitles, timeline

    text = route.request.text
    stamps = timeline.timestamps(text, route.units, result.timing, route.ssml)
    cues = subtitles.cues(text, stamps, route.ssml)
    for path, kind in ((srt, "srt"), (vtt, "vtt")):
        if path:
            _write(path, subtitles.render(cues, kind).encode("utf-8"))
    if stamps_path:
        _write(stamps_path, json.dumps(stamps, ensure_ascii=False, indent=1).encode("utf-8"))


class _progress:
    """A tqdm bar over sentences, shown only when stderr is a terminal."""

    def __enter__(self) -> _progress:
        self.bar: Any = None
        return self

    def __call__(self, done: int, total: int) -> None:
        if not sys.stderr.isatty() or total < 2:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="sentence", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _write(output: str, data: bytes) -> None:
    """Write atomically: a reader never sees half a file, a failure never leaves one."""
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(output)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@main.group()
def token() -> None:
    """JWT tokens for client systems."""


@token.command("issue")
@click.option("--sub", "subject", required=True, help="Who the token is for (e.g. ivr-01).")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    default=["tts:synthesize"],
    show_default=True,
    type=click.Choice(["tts:synthesize", "tts:admin"]),
)
@click.option("--ttl", default="30d", show_default=True, help="Lifetime: 30d, 12h, 15m, 90s.")
@click.option(
    "--private-key",
    type=click.Path(dir_okay=False, exists=True),
    help="Sign RS256/ES256 with this PEM private key (else: an HS256 secret of [auth]).",
)
@click.option(
    "--kid",
    default=None,
    help="Key id: with --private-key, the kid of its public key (default: the file's stem); "
    "else the HS256 secret to sign with (auth.hs256_secrets, or hs256 for hs256_secret_file; "
    "needed when there are several).",
)
@click.pass_context
def token_issue(
    ctx: click.Context,
    subject: str,
    scopes: tuple[str, ...],
    ttl: str,
    private_key: str | None,
    kid: str | None,
) -> None:
    """Print a signed token (iss/aud from [auth]); the daemon verifies it with the matching
    secret or public key."""
    from sambertd import auth

    cfg = _config(ctx).auth
    try:
        lifetime = auth.parse_ttl(ttl)
        if private_key:
            from cryptography.hazmat.primitives.asymmetric import ec, rsa
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            pem = load_pem_private_key(Path(private_key).read_bytes(), password=None)
            algorithm = (
                "RS256"
                if isinstance(pem, rsa.RSAPrivateKey)
                else ("ES256" if isinstance(pem, ec.EllipticCurvePrivateKey) else "")
            )
            if not algorithm:
                raise ValueError("only RSA and EC P-256 private keys are supported")
            key = auth.Key(kid or Path(private_key).stem, algorithm, None)
            click.echo(
                auth.issue(
                    key, subject, scopes, lifetime, cfg.issuer, cfg.audience, private_key=pem
                )
            )
        else:
            key = _hs256_key(cfg.hs256_secret_file, cfg.hs256_secrets, kid)
            click.echo(auth.issue(key, subject, scopes, lifetime, cfg.issuer, cfg.audience))
    except USER_ERRORS as exc:
        _fail(exc)


def _hs256_key(secret_file: str, secrets: tuple[str, ...], kid: str | None) -> Key:
    """The HS256 secret ``--kid`` names, or the only one there is."""
    from sambertd import auth

    keys = auth.load_keys(secret_file, (), secrets)
    if not keys:
        raise ValueError(
            "no auth.hs256_secrets or auth.hs256_secret_file configured; use --private-key"
        )
    if kid is None:
        if len(keys) > 1:
            raise ValueError(
                f"several HS256 secrets are configured ({', '.join(keys)}): pick one with --kid"
            )
        return next(iter(keys.values()))
    if kid not in keys:
        raise ValueError(f"no HS256 secret with kid {kid!r} (configured: {', '.join(keys)})")
    return keys[kid]


@main.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def audit_verify(paths: tuple[str, ...]) -> None:
    """Check the hash chain of audit files (or a directory of them); exit 1 if broken."""
    from sambertd.audit import format_report, verify

    report = verify([Path(p) for p in paths])
    click.echo(format_report(report))
    if not report.ok:
        sys.exit(1)


@main.group()
def cache() -> None:
    """The shared Redis cache: warm, stats, purge."""


def _redis_cache(cfg: Config) -> Any:
    from sambertd.cache import Cache

    c = Cache(cfg.cache)
    if not c.l2.enabled:
        _fail(ConfigError("no Redis configured: set cache.sentinels or cache.redis_url"))
    return c


@cache.command()
@click.option(
    "-i",
    "--input",
    "infile",
    required=True,
    type=click.Path(dir_okay=False),
    help="Phrases to pre-synthesize, one per line (# comments allowed).",
)
@click.option("--voice", default="")
@click.option("--format", "fmt", type=click.Choice(list(audio.FORMATS)), default=None)
@click.option(
    "--sample-rate", type=click.Choice([str(r) for r in audio.SAMPLE_RATES]), default=None
)
@click.pass_context
def warm(
    ctx: click.Context, infile: str, voice: str, fmt: str | None, sample_rate: str | None
) -> None:
    """Pre-synthesize a site's frequent texts into Redis (what the daemon will look up)."""
    import asyncio

    from sambertd.synth import Synthesizer
    from sambertd.types import Request

    cfg = _config(ctx)
    lines = [line.strip() for line in Path(infile).read_text(encoding="utf-8").splitlines()]
    phrases = [line for line in lines if line and not line.startswith("#")]
    try:
        synthesizer = Synthesizer(cfg)
        synthesizer.warm_up()
        store = _redis_cache(cfg)
        requests = [
            Request(
                text=p,
                voice=voice,
                format=fmt or cfg.audio.format,
                sample_rate=int(sample_rate) if sample_rate else (cfg.audio.sample_rate or None),
            )
            for p in phrases
        ]
        done, skipped = asyncio.run(_warm(synthesizer, store, requests))
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"warmed {done} phrase(s), {skipped} already cached")


async def _warm(synthesizer: Any, store: Any, requests: list[Any]) -> tuple[int, int]:
    from tqdm import tqdm

    from sambertd.cache import Entry

    done = skipped = 0
    namespace = synthesizer.config.cache.namespace
    with tqdm(total=len(requests), unit="phrase", disable=not sys.stderr.isatty()) as bar:
        for request in requests:
            route = synthesizer.route(request)
            key = synthesizer.cache_key(route, namespace)
            if await store.l2.get(key) is not None:
                skipped += 1
            else:
                entry = Entry.from_result(synthesizer.render(route))
                if not await store.l2.put(key, entry):
                    raise ConfigError(f"Redis refused the entry ({store.l2.state})")
                done += 1
            bar.update(1)
    await store.close()
    return done, skipped


@cache.command()
@click.pass_context
def stats(ctx: click.Context) -> None:
    """Entries and memory of this namespace in Redis."""
    import asyncio

    store = _redis_cache(_config(ctx))
    try:
        count, size, info = asyncio.run(_scan(store, delete=False))
    except Exception as exc:  # redis-py errors: one readable line
        _fail(RuntimeError(f"Redis: {exc}"))
    click.echo(f"namespace {store.config.namespace}: {count} entries, {size / 1e6:.1f} MB")
    click.echo(
        f"redis used_memory {info.get('used_memory_human', '?')}, "
        f"maxmemory-policy {info.get('maxmemory_policy', '?')}"
    )


@cache.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, yes: bool) -> None:
    """Delete every entry of this namespace from Redis; the daemons empty their L1 within
    a second (they watch the namespace's purge epoch)."""
    import asyncio

    store = _redis_cache(_config(ctx))
    if not yes:
        click.confirm(f"delete all {store.config.namespace}:tts:* entries?", abort=True)
    try:
        count = asyncio.run(_purge(store))
    except Exception as exc:
        _fail(RuntimeError(f"Redis: {exc}"))
    click.echo(f"purged {count} entries")


async def _purge(store: Any) -> int:
    try:
        return await store.l2.purge()  # type: ignore[no-any-return]
    finally:
        await store.close()


async def _scan(store: Any, delete: bool) -> tuple[int, int, dict[str, Any]]:
    try:
        return await store.l2.scan(delete)  # type: ignore[no-any-return]
    finally:
        await store.close()


@main.command()
@click.pass_context
def voices(ctx: click.Context) -> None:
    """List the voices of the configured engines."""
    from sambertd.synth import Synthesizer

    try:
        synthesizer = Synthesizer(_config(ctx))
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"{'VOICE':<14} {'ENGINE':<8} {'LANG':<6} {'RATE':>6}  EMOTIONS")
    for v in synthesizer.voices():
        click.echo(
            f"{v.id:<14} {v.engine:<8} {v.language:<6} {v.sample_rate:>6}  {','.join(v.emotions)}"
        )


@main.command()
@click.argument("text")
@click.option(
    "--symbols",
    "voice",
    default=None,
    metavar="VOICE",
    help="Also print the KAN-TTS symbol line(s) a sambert VOICE gets (loads the model).",
)
@click.option("--emotion", default="neutral", show_default=True, help="With --symbols.")
@click.option("--ssml", is_flag=True, help="TEXT is SSML (default: if it starts with <speak).")
@click.pass_context
def frontend(ctx: click.Context, text: str, voice: str | None, emotion: str, ssml: bool) -> None:
    """Show how TEXT is cleaned, normalized, split and read (to debug a misreading)."""
    from sambertd.frontend import Frontend

    cfg = _config(ctx)
    try:
        analysis = Frontend(cfg.frontend).analyse(text, ssml=True if ssml else None)
        lines = _sambert_symbols(cfg, voice, emotion, analysis.sentences) if voice else []
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(f"cleaned:    {analysis.cleaned}")
    click.echo(f"normalized: {analysis.normalized}")
    for i, sentence in enumerate(analysis.sentences, 1):
        words = " | ".join(f"{w.text} {' '.join(w.pinyin)}".strip() for w in sentence.words)
        click.echo(f"[{i}] {sentence.text}")
        click.echo(f"    {words}")
        for line in lines[i - 1] if lines else ():
            click.echo(f"    {line}")


def _sambert_symbols(
    cfg: Config, voice: str, emotion: str, sentences: list[Any]
) -> list[list[str]]:
    from sambertd.engines.sambert import SambertEngine

    engine = SambertEngine(cfg.sambert, threads=cfg.engine.threads)
    engine.voice(voice, emotion)
    return [engine.symbols(sentence, voice, emotion) for sentence in sentences]


@main.command()
@click.option("--host", default=None, help="Override server.host.")
@click.option("--port", type=int, default=None, help="Override server.port.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the HTTP daemon (systemd Type=notify aware)."""
    import asyncio
    import dataclasses

    from sambertd import logs, server

    def overridden(cfg: Config) -> Config:
        address = dataclasses.replace(
            cfg.server, host=host or cfg.server.host, port=port or cfg.server.port
        )
        return dataclasses.replace(cfg, server=address)

    path = ctx.obj["path"]
    logs.setup()
    try:
        asyncio.run(server.serve(overridden(_config(ctx)), lambda: overridden(load(path))))
    except USER_ERRORS as exc:
        _fail(exc)


@main.command()
@click.option(
    "--model-dir",
    type=click.Path(file_okay=False),
    help="Validate a Sambert-HiFiGAN model directory's layout instead.",
)
@click.option(
    "--load",
    is_flag=True,
    help="With --model-dir: also load every voice and synthesize one sentence with it.",
)
@click.pass_context
def check(ctx: click.Context, model_dir: str | None, load: bool) -> None:
    """Validate the configuration, lexicon and engine files (like `nginx -t`)."""
    cfg = _config(ctx)
    if model_dir is not None:
        _check_model_dir(model_dir, cfg.sambert.voices)
        if load:
            _load_model_dir(cfg, model_dir)
        return
    from sambertd.synth import Synthesizer

    try:
        synthesizer = Synthesizer(cfg)
        for engine in synthesizer.engines:
            engine.load()
        synthesizer.resolve("")
    except USER_ERRORS as exc:
        _fail(exc)
    click.echo(
        f"sambertd: configuration {cfg.source} is ok "
        f"({len(synthesizer.voices())} voice(s), lexicon "
        f"{len(synthesizer.frontend.lexicon)} entries)"
    )
    for engine in synthesizer.engines:
        click.echo(engine.describe())


def _check_model_dir(path: str, wanted: tuple[str, ...]) -> None:
    from sambertd.engines.sambert_model import check_model_dir

    layout = check_model_dir(path)
    click.echo(f"model directory {layout.path}")
    click.echo(f"voices: {', '.join(layout.voices) or '(none)'}")
    absent = [w for w in wanted if layout.voices and w not in layout.voices]
    if absent:
        click.echo(f"note: configured voices not in this model: {', '.join(absent)}")
    for problem in layout.problems:
        click.echo(f"missing or broken: {problem}")
    if not layout.ok:
        sys.exit(1)
    click.echo("layout ok")


def _load_model_dir(cfg: Config, path: str) -> None:
    """Load each voice of the directory and time one sentence with it."""
    import dataclasses
    import time

    from sambertd.engines.sambert import SambertEngine
    from sambertd.frontend import Frontend

    engine = SambertEngine(
        dataclasses.replace(cfg.sambert, model_dir=path, voices=()), threads=cfg.engine.threads
    )
    try:
        (sentence,) = Frontend(cfg.frontend).sentences("欢迎致电政务服务热线。")
        started = time.perf_counter()
        engine.load()
        click.echo(
            f"loaded in {time.perf_counter() - started:.1f} s on {engine.device} "
            f"({engine.frontend_mode} front-end)"
        )
        for voice in engine.voices():
            started = time.perf_counter()
            pcm = engine.synthesize(sentence, voice.id)
            elapsed = time.perf_counter() - started
            click.echo(
                f"{voice.id}: {len(pcm) / voice.sample_rate:.2f} s of audio in {elapsed:.2f} s "
                "(first call: includes loading the voice)"
            )
    except USER_ERRORS as exc:
        _fail(exc)


def _add_client_commands() -> None:
    """The HTTP client's commands live in their own module (``cli_jobs.py``)."""
    from sambertd.cli_jobs import jobs

    main.add_command(jobs)


_add_client_commands()
