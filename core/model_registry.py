"""Public model names (`ink-whisper`, `whisper-1`, …) resolved to what a worker loads."""

from __future__ import annotations

from dataclasses import dataclass

from core.echo import quoted
from core.errors import UnknownModel
from core.settings import Settings

BUNDLED_PREFIX = "bundled:"
BUNDLED_MODELS = ("bundled:base", "bundled:tiny.en")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    """The name the caller used."""
    spec: str
    """A bundled name, a faster-whisper model id (e.g. `large-v3`) or a model directory."""

    @property
    def english_only(self) -> bool:
        return self.spec.rstrip("/").endswith(".en")


def public_models(settings: Settings) -> list[str]:
    return sorted(settings.engine.aliases())


def resolve_model(name: str | None, settings: Settings) -> ResolvedModel:
    """Map a requested model name to its spec; 400 naming the accepted ones if unknown."""
    aliases = settings.engine.aliases()
    if not name or name not in aliases:
        accepted = ", ".join(public_models(settings))
        raise UnknownModel(
            f"model {quoted(name)} is not available; use one of: {accepted}"
            if name
            else f"model is required; use one of: {accepted}",
            param="model",
        )
    spec = aliases[name]
    return ResolvedModel(
        name=name, spec=settings.engine.default_model if spec == "default" else spec
    )
