"""`stt` start-up details: the first key's file, and one data directory wherever it runs."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from api import cli
from core.migrate import upgrade
from core.settings import PROJECT_DIR, load_settings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_the_first_key_goes_to_a_0600_file_and_only_a_terminal_sees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    settings = load_settings({"STT_DATA_DIR": str(tmp_path)})
    upgrade(settings.database.url)
    out = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    cli.ensure_first_key(settings)
    key_file = tmp_path / cli.FIRST_KEY_FILE
    key = key_file.read_text().strip()
    assert key.startswith("sk-stt-")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (key in out.getvalue()) is terminal
    assert str(key_file) in out.getvalue()
    out.truncate(0)
    cli.ensure_first_key(settings)  # a key exists now: none is made, nothing is said
    assert out.getvalue().strip("\x00") == "" and key_file.read_text().strip() == key


def test_the_default_data_dir_does_not_depend_on_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = load_settings({}).storage.data_dir
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).storage.data_dir == here == PROJECT_DIR / "data"
    assert load_settings({}).database.url == f"sqlite:///{PROJECT_DIR / 'data' / 'stt.db'}"


def test_stt_keys_says_which_database_it_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DATABASE_URL",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STT_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cli.main(["keys", "list"])
    assert f"database: sqlite:///{tmp_path / 'stt.db'}" in capsys.readouterr().err
