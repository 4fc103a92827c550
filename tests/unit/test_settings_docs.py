"""One description per setting: `.env.example` and the README's table are generated from
core/settings.py, and fail here when stale (`python -m core.settings_docs --write`)."""

from __future__ import annotations

import re
from dataclasses import Field, fields
from pathlib import Path
from typing import Any

import pytest

from core import settings_docs
from core.settings import groups, load_settings, spec_of

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "stale: run `python -m core.settings_docs --write`"


def every_field() -> list[tuple[str, Field[Any]]]:
    return [(name, f) for name, group in groups().items() for f in fields(group)]


def test_every_setting_is_described_once() -> None:
    names = [name for _, f in every_field() for name in spec_of(f).env]
    assert len(names) == len(set(names)), "a variable is read by two settings"
    for group, f in every_field():
        spec = spec_of(f)
        assert spec.help.strip(), f"{group}.{f.name}"
        assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in spec.env), f.name


def test_env_example_is_current() -> None:
    assert (ROOT / ".env.example").read_text() == settings_docs.env_example(), REGENERATE


def test_readme_settings_table_is_current() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_docs.BEGIN in readme and settings_docs.END in readme
    assert settings_docs.with_table(readme) == readme, REGENERATE


def test_readme_table_names_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split(settings_docs.BEGIN)[1].split(settings_docs.END)[0]
    for group, f in every_field():
        assert f"`{group}.{f.name}`" in table
        for name in spec_of(f).env:
            assert f"`{name}`" in table, name


def test_a_changed_description_makes_the_readme_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    real = settings_docs.markdown_table
    monkeypatch.setattr(settings_docs, "markdown_table", lambda: real().replace("beam", "BEAM"))
    assert settings_docs.with_table(readme) != readme


def test_documented_defaults_are_the_real_ones() -> None:
    """Uncommenting every plain default in .env.example changes nothing."""
    env = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line)
        if match and match.group(2):
            env[match.group(1)] = match.group(2)
    assert {"STT_MAX_UPLOAD_BYTES", "STT_VAD_FILTER", "PORT"} <= set(env)
    assert load_settings(env) == load_settings({})


def test_markers_are_required() -> None:
    with pytest.raises(ValueError, match="markers"):
        settings_docs.with_table("# no table here\n")


def test_cli_prints_the_env_example(capsys: pytest.CaptureFixture[str]) -> None:
    settings_docs.main(["--env-example"])
    assert capsys.readouterr().out == settings_docs.env_example()
