"""Issue 18 §2 and §4: the settings file, no development fallback beside a production instance,
and every setting checked at start with a one-line error."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

import config
from app import ROOT, create_app

GOOD = {
    "SECRET_KEY": "s" * 20 + "abcdefghijkl",
    "BLIND_INDEX_KEY": "b" * 20 + "mnopqrstuvwx",
    "AUDIT_KEY": "a" * 20 + "yzABCDEFGHIJ",
    "FIELD_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"x" * 32).decode(),
}
FLASK = str(Path(sys.executable).parent / "flask")


def cron(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A command as cron runs it: nothing in the environment but what is given."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PM_INSTANCE_PATH": str(tmp_path / "instance"),
        **env,
    }
    return subprocess.run(
        [FLASK, "--app", "app", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_settings_file_is_read_from_pm_config_and_the_environment_wins(tmp_path, monkeypatch) -> None:
    path = tmp_path / "wuye.env"
    path.write_text(
        "# production settings\nPM_ENV=production\nexport TIMEZONE='Asia/Shanghai'\n\n"
        'SMTP_HOST=mail.example.com\nSECRET_KEY="abc=def"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("PM_CONFIG", str(path))
    monkeypatch.setenv("SMTP_HOST", "override.example.com")
    env = config.environment()
    assert (env["PM_ENV"], env["TIMEZONE"], env["SECRET_KEY"]) == ("production", "Asia/Shanghai", "abc=def")
    assert env["SMTP_HOST"] == "override.example.com"
    path.write_text("PM_ENV production\n", encoding="utf-8")
    with pytest.raises(config.SettingsError, match="line 1: expected KEY=VALUE"):
        config.environment()
    monkeypatch.setenv("PM_CONFIG", str(tmp_path / "missing.env"))
    with pytest.raises(config.SettingsError, match="not a readable file"):
        config.environment()


def test_cron_without_settings_beside_a_production_instance_refuses_and_invents_nothing(tmp_path) -> None:
    """The cron line of the issue: no PM_ENV, no database URL, no keys, next to a production
    instance. Before, the app created instance/pm.db and dev-secrets.json, then failed."""
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / config.PRODUCTION_MARKER).write_text("production\n")
    result = cron(tmp_path, "sweep")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "PM_CONFIG" in result.stderr
    assert sorted(p.name for p in instance.iterdir()) == [config.PRODUCTION_MARKER]


def test_postgresql_url_without_pm_env_is_not_run_in_development(tmp_path) -> None:
    environ = {"DATABASE_URL": "postgresql+psycopg://app@db/wuye"}
    with pytest.raises(config.SettingsError, match="PM_ENV is not production"):
        config.refuse_silent_development(str(tmp_path), "development", environ)
    config.refuse_silent_development(str(tmp_path), "development", {**environ, "PM_ENV": "development"})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"SECRET_KEY": "..."}, "SECRET_KEY is a placeholder"),
        ({"AUDIT_KEY": "short-but-varied-key"}, "AUDIT_KEY is 20 characters; production needs at least 32"),
        ({"FIELD_ENCRYPTION_KEYS": "k1:not base64!"}, "key 'k1' is not base64"),
        ({"FIELD_ENCRYPTION_KEYS": "k1:" + base64.b64encode(b"x" * 20).decode()}, "key 'k1' is 20 bytes"),
        ({"FIELD_ENCRYPTION_KEYS": "k1=" + base64.b64encode(b"x" * 32).decode()}, "is not a key id"),
        (
            {"FIELD_ENCRYPTION_KEYS": GOOD["FIELD_ENCRYPTION_KEYS"] + "," + GOOD["FIELD_ENCRYPTION_KEYS"]},
            "key id 'k1' appears twice",
        ),
        ({"PM_ENV": "prod"}, "PM_ENV='prod' is unknown"),
        ({"SQLALCHEMY_DATABASE_URI": ""}, "PM_ENV=production needs DATABASE_URL"),
    ],
)
def test_every_secret_is_checked_at_start(tmp_path, changes, message) -> None:
    settings = {**GOOD, "PM_ENV": "production", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}", **changes}
    with pytest.raises(config.SettingsError, match=message.replace("(", r"\(")):
        create_app(settings)


def test_environment_name_is_case_insensitive(tmp_path) -> None:
    app = create_app({**GOOD, "PM_ENV": "Production", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}"})
    assert app.config["PM_ENV"] == "production"


def test_bad_setting_from_the_cli_is_one_line_not_a_traceback(tmp_path) -> None:
    settings = tmp_path / "wuye.env"
    settings.write_text(
        "".join(
            f"{k}={v}\n"
            for k, v in {
                **GOOD,
                "PM_ENV": "Production",
                "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                "FIELD_ENCRYPTION_KEYS": "k1:abc",
            }.items()
        ),
        encoding="utf-8",
    )
    result = cron(tmp_path, "audit", "verify", PM_CONFIG=str(settings))
    assert (result.returncode, result.stderr) == (
        2,
        "Error: FIELD_ENCRYPTION_KEYS: key 'k1' is 2 bytes; it must be 16, 24 or 32 (32 recommended)\n",
    )
    assert not (tmp_path / "instance" / "dev-secrets.json").exists()
