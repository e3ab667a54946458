"""``sambertd jobs``: submit a long text to a daemon, follow it, fetch the result.

A client of the HTTP API (standard library only), for operators preparing announcement
files and for scripts: ``submit`` prints the job id (``--wait -o FILE`` also follows it and
fetches the audio), ``status`` prints the record, ``fetch`` waits for the job with a progress
bar and downloads audio (and subtitles) atomically, ``cancel`` cancels or deletes.  The
daemon's address and token come from ``--url``/``--token`` or ``$SAMBERTD_URL`` and
``$SAMBERTD_TOKEN``.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

POLL_S = 1.0
CHUNK = 1 << 20


class ClientError(Exception):
    """An answer that is not what was asked for; the message has the daemon's error."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # worth asking again after this long (503, 429, down)


class Client:
    def __init__(self, url: str, token: str, cafile: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None

    def open(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self.context)
        except urllib.error.HTTPError as exc:
            again = None
            if exc.code in (429, 503):
                again = float(exc.headers.get("Retry-After", "2") or 2)
            raise ClientError(_why(exc), again) from None
        except (urllib.error.URLError, OSError) as exc:  # refused while the VIP moves, …
            raise ClientError(f"cannot reach {self.url}: {exc}", 1.0) from None

    def json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        with self.open(method, path, body) as answer:
            raw = answer.read()
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result


def _why(exc: urllib.error.HTTPError) -> str:
    try:
        err = json.loads(exc.read())["error"]
        return f"HTTP {exc.code} {err['code']}: {err['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code} {exc.reason}"


def _fail(exc: BaseException) -> None:
    click.echo(f"sambertd: error: {exc}", err=True)
    sys.exit(1)


@click.group("jobs")
@click.option(
    "--url",
    envvar="SAMBERTD_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="The daemon (or the VIP). Env: SAMBERTD_URL.",
)
@click.option(
    "--token", envvar="SAMBERTD_TOKEN", default="", help="Bearer token. Env: SAMBERTD_TOKEN."
)
@click.option("--cacert", type=click.Path(exists=True, dir_okay=False), help="CA for https.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds per HTTP call.")
@click.pass_context
def jobs(ctx: click.Context, url: str, token: str, cacert: str | None, timeout: float) -> None:
    """Long texts as background jobs on a daemon (POST /v1/jobs)."""
    ctx.obj = Client(url, token, cacert, timeout)


@jobs.command()
@click.argument("text", required=False)
@click.option(
    "-i",
    "--input",
    "infile",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read the text from a file ('-': stdin).",
)
@click.option("--voice", default="")
@click.option("--emotion", default="neutral", show_default=True)
@click.option("--speed", type=float, default=1.0, show_default=True)
@click.option("--pitch", type=float, default=1.0, show_default=True)
@click.option("--format", "fmt", default=None, help="wav, mp3, flac, opus, pcm, alaw, ulaw.")
@click.option("--sample-rate", type=int, default=None)
@click.option("--ssml", is_flag=True, help="The text is SSML.")
@click.option("--subtitles", type=click.Choice(["srt", "vtt"]), default=None)
@click.option("--wait", is_flag=True, help="Follow the job, then fetch it (needs -o).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="With --wait: audio file.")
@click.pass_obj
def submit(
    client: Client,
    text: str | None,
    infile: str | None,
    voice: str,
    emotion: str,
    speed: float,
    pitch: float,
    fmt: str | None,
    sample_rate: int | None,
    ssml: bool,
    subtitles: str | None,
    wait: bool,
    output: str | None,
) -> None:
    """Submit TEXT (or -i FILE); print the job id."""
    from sambertd.cli import read_text  # (cli imports this module to add its commands)

    try:
        text = read_text(text, infile)
    except (OSError, UnicodeDecodeError) as exc:
        _fail(exc)
    if wait and not output:
        raise click.UsageError("--wait needs -o FILE")
    body: dict[str, Any] = {"text": text, "emotion": emotion, "speed": speed, "pitch": pitch}
    optional = {
        "voice": voice,
        "format": fmt,
        "sample_rate": sample_rate,
        "subtitles": subtitles,
        "text_type": "ssml" if ssml else None,
    }
    body.update({k: v for k, v in optional.items() if v})
    try:
        job = client.json("POST", "/v1/jobs", body)
        click.echo(job["id"])
        if wait and output:
            _fetch(client, job["id"], output, None)
    except ClientError as exc:
        _fail(exc)


@jobs.command()
@click.argument("job_id")
@click.pass_obj
def status(client: Client, job_id: str) -> None:
    """Print the job's record (state, progress, links) as JSON."""
    try:
        click.echo(
            json.dumps(client.json("GET", f"/v1/jobs/{job_id}"), ensure_ascii=False, indent=1)
        )
    except ClientError as exc:
        _fail(exc)


@jobs.command()
@click.argument("job_id")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Audio file ('-': stdout).",
)
@click.option("--subtitles", "subs", type=click.Path(dir_okay=False), help="Subtitles file.")
@click.pass_obj
def fetch(client: Client, job_id: str, output: str, subs: str | None) -> None:
    """Wait for the job (progress on stderr), then download its audio."""
    try:
        _fetch(client, job_id, output, subs)
    except ClientError as exc:
        _fail(exc)


@jobs.command()
@click.argument("job_id")
@click.pass_obj
def cancel(client: Client, job_id: str) -> None:
    """Cancel an unfinished job; delete a finished one (its audio too)."""
    try:
        with client.open("DELETE", f"/v1/jobs/{job_id}") as answer:
            click.echo("deleted" if answer.status == 204 else "cancelled", err=True)
    except ClientError as exc:
        _fail(exc)


def _fetch(client: Client, job_id: str, output: str, subs: str | None) -> None:
    job = _follow(client, job_id)
    if job["state"] != "done":
        error = job.get("error") or {}
        raise ClientError(f"job {job_id} {job['state']}: {error.get('message', '')}".rstrip(": "))
    _download(client, job["links"]["audio"], output)
    if subs:
        if "subtitles" not in job["links"]:
            raise ClientError("this job was submitted without --subtitles")
        _download(client, job["links"]["subtitles"], subs)
    click.echo(f"{output}: {job['duration_ms'] / 1000:.1f} s, {job['size']} bytes", err=True)


def _follow(client: Client, job_id: str) -> dict[str, Any]:
    """Poll until the job ends: a bar on a terminal, a line per tenth otherwise."""
    bar: Any = None
    shown = -1
    try:
        while True:
            job = _patiently(client, f"/v1/jobs/{job_id}")
            done, total = job["progress"]["done"], job["progress"]["total"]
            if sys.stderr.isatty() and total:
                if bar is None:
                    from tqdm import tqdm

                    bar = tqdm(total=total, unit="unit", file=sys.stderr, desc=job_id[:8])
                bar.update(done - bar.n)
            elif total and done * 10 // total != shown:
                shown = done * 10 // total
                click.echo(f"{job_id}: {job['state']} {done}/{total} units", err=True)
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            time.sleep(POLL_S)
    finally:
        if bar is not None:
            bar.close()


def _patiently(client: Client, path: str, give_up_s: float = 300.0) -> dict[str, Any]:
    """GET, riding out what a failover looks like from outside (503 while Redis or the VIP
    moves, 429, a refused connection) for up to ``give_up_s``, as Retry-After asks."""
    deadline = time.monotonic() + give_up_s
    while True:
        try:
            return client.json("GET", path)
        except ClientError as exc:
            if exc.retry_after is None or time.monotonic() > deadline:
                raise
            click.echo(f"({exc}; asking again in {exc.retry_after:g} s)", err=True)
            time.sleep(min(exc.retry_after, 30.0))


def _download(client: Client, path: str, output: str) -> None:
    """Stream to a partial file beside ``output``, then rename: never half a file."""
    with client.open("GET", path) as answer:
        expected = answer.length  # Content-Length; a cut connection ends the reads early
        if output == "-":
            _copy(answer, sys.stdout.buffer, expected)
            sys.stdout.buffer.flush()
            return
        target = Path(output)
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            with partial.open("wb") as f:
                _copy(answer, f, expected)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def _copy(answer: Any, out: Any, expected: int | None) -> None:
    """Copy the body; fewer bytes than announced (a cut connection) is an error, not a
    short file that looks complete."""
    got = 0
    try:
        while chunk := answer.read(CHUNK):
            out.write(chunk)
            got += len(chunk)
    except (OSError, http.client.HTTPException) as exc:
        raise ClientError(f"download cut after {got} bytes: {exc}") from None
    if expected is not None and got != expected:
        raise ClientError(f"download cut after {got} of {expected} bytes")
