"""The site lexicon file: what it accepts, and errors that name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sambertd.frontend import lexicon

EXAMPLE = Path(__file__).parent.parent / "config" / "lexicon.example.txt"


def test_example_file_loads() -> None:
    entries = lexicon.load(EXAMPLE)
    assert entries["重庆"] == ("chong2", "qing4")
    assert entries["蚌埠"] == ("beng4", "bu4")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("重庆 chong2 qing4", ("重庆", ("chong2", "qing4"))),
        ("  绿色\tlü4 se4  # comment", ("绿色", ("lv4", "se4"))),
        ("女 nv3", ("女", ("nv3",))),
        ("行长 HANG2 ZHANG3", ("行长", ("hang2", "zhang3"))),
        ("# only a comment", None),
        ("", None),
        ("   ", None),
    ],
)
def test_good_lines(line: str, expected: object) -> None:
    assert lexicon.parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("重庆 chong2", "2 characters but 1 syllables"),
        ("重庆 chong qing4", "not TONE3"),
        ("重庆 chong6 qing4", "not TONE3"),
        ("ABC a1 b1 c1", "Chinese characters only"),
        ("重庆", "2 characters but 0 syllables"),
    ],
)
def test_bad_lines(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lexicon.parse_line(line)


def test_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "lex.txt"
    path.write_text("重庆 chong2 qing4\n\n行长 hang2\n", encoding="utf-8")
    with pytest.raises(lexicon.LexiconError, match=r"lex.txt:3: "):
        lexicon.load(path)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(lexicon.LexiconError, match="cannot read"):
        lexicon.load(tmp_path / "missing.txt")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("重庆".encode("gbk"))
    with pytest.raises(lexicon.LexiconError, match="cannot read"):
        lexicon.load(bad)


def test_no_lexicon() -> None:
    assert lexicon.load(None) == {} == lexicon.load("")
