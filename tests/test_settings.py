"""Settings from FACEPRINT_* variables: parsing, precedence, errors that name the variable, no secret in repr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from faceprint.errors import InvalidSettingError
from faceprint.settings import Settings, load_settings, open_executor


def test_defaults_resolve_under_the_data_home() -> None:
    settings = Settings(environ={"XDG_DATA_HOME": "/nowhere"})
    assert settings.workers is None
    assert settings.executor == "auto"
    assert settings.confidential is False
    assert settings.database_url is None
    assert settings.encryption_key is None


def test_every_variable_is_read_case_insensitively_after_the_prefix() -> None:
    environ = {
        "FACEPRINT_MODEL_DIR": "~/models",
        "faceprint_gallery_dir": "/srv/galleries",
        "FACEPRINT_WORKERS": " 3 ",
        "FACEPRINT_EXECUTOR": "dask://scheduler:8786",
        "FACEPRINT_DATABASE_URL": "postgresql://db/faceprint",
        "FACEPRINT_CONFIDENTIAL": "On",
        "FACEPRINT_ENCRYPTION_KEY_FILE": "/run/keys/k",
        "FACEPRINT_SOMETHING_ELSE": "ignored",
        "OTHER_WORKERS": "99",
    }
    settings = Settings(environ=environ)
    assert settings.model_dir == Path("~/models").expanduser()
    assert settings.gallery_dir == Path("/srv/galleries")
    assert settings.workers == 3
    assert settings.executor == "dask://scheduler:8786"
    assert settings.database_url == "postgresql://db/faceprint"
    assert settings.confidential is True
    assert settings.encryption_key_file == Path("/run/keys/k")


@pytest.mark.parametrize(("text", "value"), [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("off", False)])
def test_booleans(text: str, value: bool) -> None:
    assert Settings(environ={"FACEPRINT_CONFIDENTIAL": text}).confidential is value


def test_overrides_win_over_the_environment_and_none_is_no_override() -> None:
    environ = {"FACEPRINT_WORKERS": "4", "FACEPRINT_CONFIDENTIAL": "0"}
    assert Settings(environ=environ, workers=2, confidential=True).workers == 2
    assert Settings(environ=environ, confidential=True).confidential is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FACEPRINT_WORKERS", "0", "FACEPRINT_WORKERS: must be 1-256"),
        ("FACEPRINT_WORKERS", "two", "FACEPRINT_WORKERS: must be a whole number"),
        ("FACEPRINT_WORKERS", "999", "FACEPRINT_WORKERS: must be 1-256"),
        ("FACEPRINT_EXECUTOR", "threads", "FACEPRINT_EXECUTOR: must be auto, local, processes or dask://"),
        ("FACEPRINT_CONFIDENTIAL", "maybe", "FACEPRINT_CONFIDENTIAL: must be true or false"),
        ("FACEPRINT_MODEL_DIR", "  ", "FACEPRINT_MODEL_DIR: must be a path"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidSettingError, match=message) as caught:
        Settings(environ={name: value})
    assert caught.value.code == "invalid_setting"


def test_unknown_overrides_and_wrong_types_are_refused() -> None:
    with pytest.raises(InvalidSettingError, match="unknown setting 'wrokers'"):
        Settings(wrokers=2)
    with pytest.raises(InvalidSettingError, match="FACEPRINT_WORKERS"):
        Settings(workers=True)


def test_the_key_never_shows_in_repr() -> None:
    settings = Settings(environ={}, encryption_key="c2VjcmV0LWtleS1ieXRlcw==")
    assert settings.encryption_key == "c2VjcmV0LWtleS1ieXRlcw=="
    assert "c2VjcmV0" not in repr(settings)


def test_load_settings_reads_this_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEPRINT_WORKERS", "5")
    assert load_settings().workers == 5
    assert load_settings(workers=None).workers == 5
    assert open_executor("local") == "local"


def test_importing_settings_does_not_import_pydantic() -> None:
    # The reason this module parses by hand (its docstring): pydantic costs a quarter second per start.
    code = "import sys, faceprint.settings; print('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
