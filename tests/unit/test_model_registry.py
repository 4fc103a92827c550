"""`core.model_registry`: public model names resolved to what a worker loads."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest, UnknownModel
from core.model_registry import ResolvedModel, public_models, resolve_model
from core.settings import DEFAULT_MODEL, Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    return load_settings({"STT_MODEL_ALIASES": '{"tiny": "bundled:tiny.en", "big": "large-v3"}'})


@pytest.mark.parametrize(
    "name", ["ink-whisper", "ink-whisper-2025-06-04", "whisper-1", "gpt-4o-transcribe-diarize"]
)
def test_builtin_aliases_resolve_to_default_model(name: str, settings: Settings) -> None:
    assert resolve_model(name, settings) == ResolvedModel(name=name, spec=DEFAULT_MODEL)


def test_default_model_setting_is_followed() -> None:
    settings = load_settings({"STT_DEFAULT_MODEL": "/models/custom"})
    assert resolve_model("whisper-1", settings).spec == "/models/custom"


def test_custom_aliases(settings: Settings) -> None:
    assert resolve_model("tiny", settings).spec == "bundled:tiny.en"
    assert resolve_model("big", settings).spec == "large-v3"


def test_unknown_model_names_the_accepted_ones(settings: Settings) -> None:
    with pytest.raises(UnknownModel) as info:
        resolve_model("gpt-4o-transcribe", settings)
    err = info.value
    assert isinstance(err, InvalidRequest)
    assert err.status == 400
    assert err.code == "model_not_found"
    assert err.param == "model"
    assert "gpt-4o-transcribe" in err.message
    for name in ("big", "ink-whisper", "ink-whisper-2025-06-04", "tiny", "whisper-1"):
        assert name in err.message


def test_spec_is_not_a_model_name(settings: Settings) -> None:
    """Only public names are accepted, not the specs they point at."""
    with pytest.raises(UnknownModel):
        resolve_model("large-v3", settings)


@pytest.mark.parametrize("name", [None, ""])
def test_missing_model(name: str | None, settings: Settings) -> None:
    with pytest.raises(UnknownModel, match="model is required") as info:
        resolve_model(name, settings)
    assert info.value.param == "model"
    assert "whisper-1" in info.value.message


def test_public_models_sorted(settings: Settings) -> None:
    assert public_models(settings) == sorted(
        [
            "big",
            "gpt-4o-transcribe-diarize",
            "ink-whisper",
            "ink-whisper-2025-06-04",
            "tiny",
            "whisper-1",
        ]
    )


@pytest.mark.parametrize(
    ("spec", "english"),
    [
        ("bundled:tiny.en", True),
        ("base.en", True),
        ("/models/small.en/", True),
        ("bundled:base", False),
        ("large-v3", False),
        ("/models/en", False),
    ],
)
def test_english_only(spec: str, english: bool) -> None:
    assert ResolvedModel(name="m", spec=spec).english_only is english
