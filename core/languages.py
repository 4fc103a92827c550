"""Languages Whisper knows (ISO-639-1, plus `haw` and `yue` which have no two-letter code)."""

from __future__ import annotations

from core.errors import InvalidRequest

WHISPER_LANGUAGES: frozenset[str] = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    ]
)


def validate_language(value: str | None, *, english_only: bool) -> str | None:
    """A lower-case language code, or None to detect it; 400 for anything else."""
    if value is None or value.strip() == "" or value.strip().lower() == "auto":
        return "en" if english_only else None
    code = value.strip().lower()
    if code not in WHISPER_LANGUAGES:
        raise InvalidRequest(
            f"language {value!r} is not a supported ISO-639-1 code", param="language"
        )
    if english_only and code != "en":
        raise InvalidRequest(
            f"the selected model is English-only and cannot transcribe language {code!r}",
            param="language",
        )
    return code
