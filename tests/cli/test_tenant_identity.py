"""`membersync tenant identity`: a tenant's matching and merge settings, checked before they are stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, Db


def _write(tmp_path: Path, content: object) -> str:
    path = tmp_path / "identity.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_set_show_and_reset(cli: Cli, db: Db, tmp_path: Path) -> None:
    assert cli("tenant", "create", "acme").code == 0
    assert cli("tenant", "identity", "--tenant", "acme").stdout.strip() == "built-in defaults"
    settings = {"policies": {"fields": {"phone": "local_wins"}}, "thresholds": {"review": 0.8}, "default_region": "US"}
    shown = cli("tenant", "identity", "--tenant", "acme", "--file", _write(tmp_path, settings))
    assert (shown.code, json.loads(shown.stdout)) == (0, settings)
    stored = db.scalar("SELECT identity_settings FROM tenants")
    assert (json.loads(stored) if isinstance(stored, str) else stored) == settings
    assert cli("tenant", "identity", "--tenant", "acme", "--reset").stdout.strip() == "built-in defaults"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"policies": {"default": "loudest"}}, "policies: default: unknown policy"),
        ({"thresholds": {"review": 0.95, "auto_merge": 0.9}}, "thresholds:"),
        ({"thresholds": {"review": "high"}}, "thresholds: auto_merge and review must be numbers"),
        ({"default_region": "Britain"}, "default_region"),
        ([1, 2], "must be a JSON object"),
        ("{not json", "is not JSON"),
    ],
)
def test_bad_settings_exit_2_and_store_nothing(cli: Cli, db: Db, tmp_path: Path, content: object, message: str) -> None:
    assert cli("tenant", "create", "acme").code == 0
    result = cli("tenant", "identity", "--tenant", "acme", "--file", _write(tmp_path, content))
    assert result.code == 2
    assert message in result.error
    assert len(result.stderr.strip().splitlines()) == 1
    assert db.scalar("SELECT identity_settings FROM tenants") is None


def test_unknown_tenant_missing_file_and_both_options(cli: Cli, db: Db, tmp_path: Path) -> None:
    assert cli("tenant", "create", "acme").code == 0
    assert cli("tenant", "identity", "--tenant", "ghost").code == 2
    missing = cli("tenant", "identity", "--tenant", "acme", "--file", str(tmp_path / "nope.json"))
    assert (missing.code, "cannot read" in missing.error) == (2, True)
    both = cli("tenant", "identity", "--tenant", "acme", "--file", _write(tmp_path, {}), "--reset")
    assert (both.code, "not both" in both.error) == (2, True)
