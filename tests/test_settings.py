from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from imagegate.settings import SECRET_KEY_FILE, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("MODEL", "MAX_RETRIES", "IMAGEGATE_MODEL", "IMAGEGATE_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IMAGEGATE_DATA_DIR", str(tmp_path))


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'imagegate.db'}"
    assert (settings.backend, settings.workers, settings.job_timeout_s) == ("sketch", 1, 60)
    assert (settings.lease_s, settings.sketch_delay_ms) == (30, 0)


def test_the_original_deployment_names_are_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL", "my-model")
    monkeypatch.setenv("MAX_RETRIES", "7")
    settings = load_settings()
    assert (settings.model_name, settings.max_retries) == ("my-model", 7)


def test_a_plain_postgres_url_gets_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_DATABASE_URL", "postgresql://u@db:5432/jobs")
    settings = load_settings()
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@db:5432/jobs"
    assert settings.is_postgres


def test_a_missing_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings().signing_key
    assert first == load_settings().signing_key
    assert (tmp_path / SECRET_KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_given_secret_key_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAGEGATE_SECRET_KEY", "from-env-" + "k" * 32)
    assert load_settings().signing_key == b"from-env-" + b"k" * 32
    assert not (tmp_path / SECRET_KEY_FILE).exists()


def test_bad_settings_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGATE_WORKERS", "-1")
    with pytest.raises(ValidationError, match="workers"):
        load_settings()


@pytest.mark.parametrize("name", ["IMAGEGATE_SECRET_KEY", "IMAGEGATE_ADMIN_TOKEN"])
def test_an_empty_secret_is_refused(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, " ")
    with pytest.raises(ValidationError, match="set but empty"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("IMAGEGATE_SECRET_KEY", "a"),
        ("IMAGEGATE_ADMIN_TOKEN", "a"),
        ("IMAGEGATE_ADMIN_TOKEN", "x" * 31),
        ("IMAGEGATE_WEBHOOK_SECRET", "whsec_" + "QUJD" * 7),  # 21 bytes of key
        ("IMAGEGATE_WEBHOOK_SECRET", "whsec_not base64!"),
    ],
)
def test_a_weak_secret_is_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Issue 16, finding 7: IMAGEGATE_ADMIN_TOKEN=a used to open the admin API."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="32"):
        load_settings()
