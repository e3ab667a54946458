"""sambertd: a highly available Chinese text-to-speech daemon."""

from importlib import metadata

__version__ = "0.1.0"


def library_versions(*distributions: str) -> dict[str, str]:
    """Installed versions of ``distributions`` ("absent" if not installed): part of the
    cache key wherever a library's release can change the audio."""
    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found
