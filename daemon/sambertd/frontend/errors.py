"""Errors the Chinese front-end reports to its callers.

The text clean-up and normalization functions never raise: they always return a (possibly
empty) string.  Whoever calls them decides whether an empty or unreadable result is an error
for the request at hand, and reports it with :class:`FrontendError` so that the daemon can turn
it into a stable, machine-readable error code for the client.
"""

from __future__ import annotations

__all__ = ["EMPTY_TEXT", "TEXT_TOO_LONG", "UNSPEAKABLE_TEXT", "FrontendError"]

#: Nothing left to say after clean-up (empty input, only whitespace, emoji or control codes).
EMPTY_TEXT = "empty_text"
#: The request is longer than the daemon is willing to synthesize in one go.
TEXT_TOO_LONG = "text_too_long"
#: Text remained after clean-up, but normalization left nothing a Mandarin voice can read.
UNSPEAKABLE_TEXT = "unspeakable_text"


class FrontendError(ValueError):
    """A request's text cannot be turned into speech.

    It subclasses :class:`ValueError` so that generic callers that only know "bad input" still
    catch it, while the daemon reads :attr:`code` to answer with a stable error code instead of
    a translated, free-form message.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else code.replace("_", " ")
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"FrontendError(code={self.code!r}, message={self.message!r})"
