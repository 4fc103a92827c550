"""`core.languages.validate_language`."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from core.languages import WHISPER_LANGUAGES, validate_language


@pytest.mark.parametrize("value", [None, "", "  ", "auto", "AUTO", " Auto "])
def test_detect(value: str | None) -> None:
    assert validate_language(value, english_only=False) is None


@pytest.mark.parametrize("value", [None, "", "auto"])
def test_detect_on_english_only_model_is_english(value: str | None) -> None:
    assert validate_language(value, english_only=True) == "en"


@pytest.mark.parametrize(
    ("value", "expected"), [("en", "en"), ("FR", "fr"), (" De ", "de"), ("haw", "haw")]
)
def test_valid_codes_are_normalised(value: str, expected: str) -> None:
    assert validate_language(value, english_only=False) == expected


@pytest.mark.parametrize("value", ["xx", "english", "en-US", "e", "zz1"])
def test_invalid_code(value: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        validate_language(value, english_only=False)
    assert info.value.param == "language"
    assert info.value.status == 400


def test_english_only_model_refuses_other_languages() -> None:
    assert validate_language("EN", english_only=True) == "en"
    with pytest.raises(InvalidRequest, match="English-only") as info:
        validate_language("fr", english_only=True)
    assert info.value.param == "language"


def test_language_table() -> None:
    assert len(WHISPER_LANGUAGES) == 100
    assert all(code == code.lower() for code in WHISPER_LANGUAGES)
    assert {"en", "zh", "yue", "haw"} <= WHISPER_LANGUAGES
