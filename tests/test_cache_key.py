"""The cache key covers everything that shapes the audio: the request, every front-end
setting that can change a reading (including ones added later), the lexicon's content, the
engine's model and settings.  Real Synthesizer, real front-end, real baker engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sambertd.config import Config, FrontendConfig
from sambertd.engines import Prosody
from sambertd.engines.baker import BakerEngine
from sambertd.frontend import NOT_AUDIO
from sambertd.synth import Synthesizer
from sambertd.types import Request

TEXT = "请于9:00前到银行行长办公室，办理对公业务。"


def key(config: Config, request: Request, stream: bool = False) -> str:
    synthesizer = Synthesizer(config)
    return synthesizer.cache_key(synthesizer.route(request, stream), "ns")


def test_every_request_field_is_in_the_key() -> None:
    cfg = Config()
    base = key(cfg, Request(TEXT))
    assert base.startswith("ns:tts:") and len(base) == len("ns:tts:") + 64
    assert key(cfg, Request(TEXT)) == base
    for other in (
        Request("请于10:00前到银行行长办公室，办理对公业务。"),
        Request(TEXT, prosody=Prosody(speed=1.1)),
        Request(TEXT, prosody=Prosody(pitch=0.9)),
        Request(TEXT, prosody=Prosody(volume=0.5)),
        Request(TEXT, format="mp3"),
        Request(TEXT, sample_rate=8000),
    ):
        assert key(cfg, other) != base, other


def test_texts_that_read_the_same_share_a_key() -> None:
    cfg = Config()
    assert key(cfg, Request("大厅9:00开门。")) == key(cfg, Request("大厅九点开门。"))


@pytest.mark.parametrize(
    "name", [f.name for f in dataclasses.fields(FrontendConfig) if f.name not in NOT_AUDIO]
)
def test_every_front_end_setting_that_can_change_audio_is_in_the_key(name: str) -> None:
    """Enumerates the dataclass: a setting added later is covered without touching this."""
    value = getattr(FrontendConfig(), name)
    changed = (not value) if isinstance(value, bool) else value + 7
    cfg = Config()
    other = dataclasses.replace(cfg, frontend=dataclasses.replace(cfg.frontend, **{name: changed}))
    assert Synthesizer(cfg).frontend.fingerprint != Synthesizer(other).frontend.fingerprint
    assert key(cfg, Request(TEXT)) != key(other, Request(TEXT))


def test_a_limit_that_cannot_change_audio_keeps_the_key() -> None:
    cfg = Config()
    other = dataclasses.replace(cfg, frontend=FrontendConfig(max_text_chars=99))
    assert key(cfg, Request(TEXT)) == key(other, Request(TEXT))


def test_the_lexicon_content_is_in_the_key(tmp_path: Path) -> None:
    """A site fixes a misreading in its lexicon (same file) and reloads: new keys."""
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("行长 hang2 zhang3\n", encoding="utf-8")
    cfg = dataclasses.replace(Config(), frontend=FrontendConfig(lexicon=str(lexicon)))
    before = key(cfg, Request(TEXT))
    assert key(cfg, Request(TEXT)) == before  # same content, same key
    lexicon.write_text("行长 hang2 zhang3\n对公 dui4 gong1\n", encoding="utf-8")
    assert key(cfg, Request(TEXT)) != before


def test_engine_settings_that_change_the_numbers_are_in_the_key() -> None:
    cfg = Config()

    def baker_key(engine: BakerEngine) -> str:
        synthesizer = Synthesizer(cfg, engines=[engine])
        return synthesizer.cache_key(synthesizer.route(Request(TEXT)), "ns")

    base = baker_key(BakerEngine(threads=2))
    assert baker_key(BakerEngine(threads=2)) == base
    assert baker_key(BakerEngine(threads=1)) != base  # summation order: last-bit changes
    assert baker_key(BakerEngine(runtime="litert")) != base
    assert baker_key(BakerEngine(precision="f32")) != base
    loaded = BakerEngine(threads=2)
    loaded.load()  # the model digest joins the version once the files are read
    assert baker_key(loaded) != base and loaded.model_version.startswith("baker-")
    # loaded, the key names what really runs: a LiteRT fallback never shares OpenVINO's audio
    fallback = BakerEngine(threads=2, runtime="litert")
    fallback.load()
    assert baker_key(fallback) != baker_key(loaded)


def test_a_stream_whose_first_unit_is_cut_short_has_its_own_key() -> None:
    cfg = Config()
    assert key(cfg, Request("请稍候。"), stream=True) == key(cfg, Request("请稍候。"))
    assert key(cfg, Request(TEXT), stream=True) != key(cfg, Request(TEXT))
