"""Who may call us: JWT bearer tokens, IP allowlists, trusted proxies, rate limits.

Design choices that matter for 等保 level 3:

* Each configured key has exactly one algorithm (HS256 for a shared secret, RS256/ES256 for a
  public key), and a token must use *that* algorithm for *that* key.  ``alg: none`` and the
  HS/RS confusion attack (an HS256 token "signed" with an RSA public key) are therefore
  refused before any signature check.  ``kid`` selects the key, so keys can rotate with
  several valid at once.
* Claims exp, iat, iss, aud and sub are required; scopes (``scope``, space separated, or
  ``scopes``, a list) decide what a subject may do: ``tts:synthesize``, ``tts:admin``.
* X-Forwarded-For is believed only when the TCP peer is a configured trusted proxy, and then
  only up to the first untrusted hop from the right (spoofed leftmost entries are ignored).
* Token buckets per subject and per IP; shared through Redis when it is up, so both nodes of
  the pair count together, local otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sambertd.cache import L2
    from sambertd.config import AuthConfig

log = logging.getLogger(__name__)
SYNTHESIZE, ADMIN = "tts:synthesize", "tts:admin"
ALGORITHMS = ("HS256", "RS256", "ES256")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthError(Exception):
    """401 (who are you?) or 403 (you may not), with a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Key:
    kid: str
    algorithm: str
    material: Any  # bytes secret or a public key object


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]


LEGACY_HS256_KID = "hs256"  # the kid of auth.hs256_secret_file


def _secret(path: str) -> bytes:
    secret = Path(path).read_bytes().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: an HS256 secret needs at least 32 bytes")
    return secret


def kid_entries(entries: Iterable[str], setting: str) -> list[tuple[str, str]]:
    """``["kid=/path", ...]`` → ``[(kid, path), ...]``; a malformed entry is a ValueError."""
    out = []
    for entry in entries:
        kid, sep, path = entry.partition("=")
        kid, path = kid.strip(), path.strip()
        if not sep or not kid or not path:
            raise ValueError(f"auth.{setting} entry {entry!r} is not kid=/path/to/file")
        out.append((kid, path))
    return out


def load_keys(
    hs256_secret_file: str, public_keys: Iterable[str], hs256_secrets: Iterable[str] = ()
) -> dict[str, Key]:
    """``public_keys`` entries are ``kid=/path/key.pem``; the algorithm follows the key type
    (RSA → RS256, EC P-256 → ES256).  ``hs256_secrets`` entries are ``kid=/path/secret``, one
    shared secret per kid, so a secret can rotate without invalidating every token at once.
    The single ``hs256_secret_file``, if any, has kid ``hs256``.  A kid may appear once."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    keys: dict[str, Key] = {}

    def add(key: Key) -> None:
        if key.kid in keys:
            raise ValueError(f"auth: key id {key.kid!r} is configured twice")
        keys[key.kid] = key

    if hs256_secret_file:
        add(Key(LEGACY_HS256_KID, "HS256", _secret(hs256_secret_file)))
    for kid, path in kid_entries(hs256_secrets, "hs256_secrets"):
        add(Key(kid, "HS256", _secret(path)))
    for kid, path in kid_entries(public_keys, "public_keys"):
        public = load_pem_public_key(Path(path).read_bytes())
        if isinstance(public, rsa.RSAPublicKey):
            algorithm = "RS256"
        elif isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1":
            algorithm = "ES256"
        else:
            raise ValueError(f"{path}: only RSA and EC P-256 public keys are supported")
        add(Key(kid, algorithm, public))
    return keys


class Verifier:
    def __init__(
        self, keys: Mapping[str, Key], issuer: str, audience: str, leeway_s: float
    ) -> None:
        self.keys, self.issuer, self.audience, self.leeway = dict(keys), issuer, audience, leeway_s

    def _key(self, header: Mapping[str, Any]) -> Key:
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise AuthError(401, "invalid_token", f"algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        if kid is not None:
            key = self.keys.get(str(kid))
            if key is None:
                raise AuthError(401, "invalid_token", f"unknown key id {kid!r}")
        else:
            key = self._key_without_kid(str(algorithm))
        if key.algorithm != algorithm:  # the confusion attack: HS256 against an RSA key
            raise AuthError(
                401, "invalid_token", f"key {key.kid!r} is {key.algorithm}, token says {algorithm}"
            )
        return key

    def _key_without_kid(self, algorithm: str) -> Key:
        """A token without ``kid`` (from another issuer: ours always set one) is verified by
        the only key of its algorithm.  With several HS256 secrets (a rotation under way) it
        is verified by the legacy ``hs256`` secret if that is still configured, as before the
        rotation began, and never by trying each secret in turn; otherwise it is refused."""
        matching = [k for k in self.keys.values() if k.algorithm == algorithm]
        if len(matching) == 1:
            return matching[0]
        legacy = self.keys.get(LEGACY_HS256_KID)
        if algorithm == "HS256" and legacy is not None and legacy.algorithm == "HS256":
            return legacy
        if not matching:
            raise AuthError(401, "invalid_token", f"token has no kid and no {algorithm} key fits")
        kids = ", ".join(sorted(k.kid for k in matching))
        raise AuthError(
            401,
            "invalid_token",
            f"token has no kid header but {len(matching)} {algorithm} keys are configured "
            f"({kids}): the token must name its key in kid",
        )

    def verify(self, token: str) -> Principal:
        import jwt

        try:
            key = self._key(jwt.get_unverified_header(token))
            claims = jwt.decode(
                token,
                key.material,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "token_expired", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(401, "invalid_token", "token is not valid yet") from None
        except jwt.PyJWTError as exc:
            raise AuthError(401, "invalid_token", f"invalid token: {exc}") from None
        if claims["iat"] > time.time() + self.leeway:
            raise AuthError(401, "invalid_token", "token issued in the future")
        return Principal(str(claims["sub"]), frozenset(_scopes(claims)))


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    scope = claims.get("scope", claims.get("scopes", []))
    if isinstance(scope, str):
        return scope.split()
    return [str(s) for s in scope] if isinstance(scope, list) else []


def issue(
    key: Key,
    subject: str,
    scopes: Iterable[str],
    ttl_s: float,
    issuer: str,
    audience: str,
    private_key: Any = None,
) -> str:
    """A token for an operator to hand to a client system (``sambertd token issue``)."""
    import jwt

    now = int(time.time())
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
    }
    signing = key.material if key.algorithm == "HS256" else private_key
    return str(jwt.encode(claims, signing, algorithm=key.algorithm, headers={"kid": key.kid}))


def parse_ttl(text: str) -> float:
    """``30d``, ``12h``, ``15m``, ``90s`` or plain seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


# -- networks ------------------------------------------------------------------------------


def networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


def client_ip(peer: str, forwarded_for: str | None, trusted: list[Network]) -> str:
    """The real client: the TCP peer, or — only when the peer is a trusted proxy — the
    right-most X-Forwarded-For hop that is not itself a trusted proxy."""
    if not forwarded_for or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the header: trust nothing from it
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _in(address: str, nets: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in n for n in nets)


def loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, or an IPv4-mapped loopback address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def allowed(address: str, nets: list[Network]) -> bool:
    """An empty allowlist allows everyone (auth still applies)."""
    return not nets or _in(address, nets)


def subject_networks(entries: Iterable[str]) -> dict[str, list[Network]]:
    """``ivr-01=10.1.2.0/24,10.1.3.0/24`` → a subject may only call from those networks."""
    out: dict[str, list[Network]] = {}
    for entry in entries:
        subject, sep, nets = entry.partition("=")
        if not sep:
            raise ValueError(f"auth.subject_networks entry {entry!r} is not sub=CIDR[,CIDR]")
        out[subject.strip()] = networks(nets.split(","))
    return out


# -- rate limiting -------------------------------------------------------------------------

# KEYS[1] bucket; ARGV: rate, burst, now (s), cost.  Returns retry-after in ms (0 = allowed).
_BUCKET = """
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 't', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RateLimiter:
    """Token buckets, in Redis when available (shared by the pair), else in-process."""

    def __init__(
        self, rate: float, burst: float, redis: L2 | None = None, namespace: str = "sambertd"
    ) -> None:
        self.rate, self.burst, self.redis, self.namespace = rate, burst, redis, namespace
        self.buckets: dict[str, tuple[float, float]] = {}

    async def check(self, key: str) -> float:
        """Seconds to wait before retrying; 0.0 means the request may go ahead."""
        if self.rate <= 0:
            return 0.0
        if self.redis is not None and self.redis.enabled:
            done, wait_ms = await self.redis.eval(
                _BUCKET, f"{self.namespace}:rl:{key}", self.rate, self.burst, time.time()
            )
            if done:
                return float(wait_ms) / 1000
        return self._check_local(key)

    def _check_local(self, key: str) -> float:
        now = time.monotonic()
        tokens, at = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        if len(self.buckets) > 100_000:  # bound memory against a flood of distinct keys
            self.buckets.clear()
        return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


class Gate:
    """Everything the HTTP layer asks before running a handler, built from ``[auth]``."""

    def __init__(
        self, config: AuthConfig, redis: L2 | None = None, namespace: str = "sambertd"
    ) -> None:
        self.config = config
        self.verifier = (
            Verifier(
                load_keys(config.hs256_secret_file, config.public_keys, config.hs256_secrets),
                config.issuer,
                config.audience,
                config.leeway_s,
            )
            if config.enabled
            else None
        )
        self.allow = networks(config.allow)
        self.trusted = networks(config.trusted_proxies)
        self.bound = subject_networks(config.subject_networks)
        self.per_subject = RateLimiter(
            config.rate_per_subject, config.burst_per_subject, redis, namespace
        )
        self.per_ip = RateLimiter(config.rate_per_ip, config.burst_per_ip, redis, namespace)

    def inherit(self, previous: Gate) -> None:
        """Keep the in-process rate-limit buckets across a reload when the rates are the
        same (a reload must not hand every client a fresh burst)."""
        pairs = ((self.per_ip, previous.per_ip), (self.per_subject, previous.per_subject))
        for mine, theirs in pairs:
            if (mine.rate, mine.burst) == (theirs.rate, theirs.burst):
                mine.buckets = theirs.buckets

    def client(self, peer: str, forwarded_for: str | None) -> str:
        return client_ip(peer, forwarded_for, self.trusted)

    def proxied(self, peer: str) -> bool:
        """The TCP peer is a trusted proxy (HAProxy in scale-out), not a client on the VIP."""
        return _in(peer, self.trusted)

    def authenticate(self, authorization: str | None, ip: str, scope: str) -> Principal:
        """The caller's identity and scope check; raises :class:`AuthError`."""
        if self.verifier is None:
            return Principal("anonymous", frozenset({SYNTHESIZE, ADMIN}))
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthError(401, "missing_token", "send Authorization: Bearer <token>")
        principal = self.verifier.verify(authorization[len("Bearer ") :].strip())
        if scope not in principal.scopes:
            raise AuthError(403, "insufficient_scope", f"token lacks scope {scope}")
        nets = self.bound.get(principal.subject)
        if nets is not None and not _in(ip, nets):
            raise AuthError(
                403, "forbidden_network", f"subject {principal.subject!r} may not call from {ip}"
            )
        return principal
