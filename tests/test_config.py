"""Settings load once from defaults, COMMHUB_* and flags; bad values stop start-up by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from commhub.config import Settings, SettingsError
from tests.conftest import run_cli


def test_defaults() -> None:
    s = Settings.load(env={})
    assert (s.host, s.port, s.max_message_bytes) == ("127.0.0.1", 8080, 65536)
    # offensive imagery is blocked automatically; `auto` rooms then stay relayed (sfu)
    assert (s.imagery, s.room_mode) == (True, "auto")
    assert Settings.load(env={"COMMHUB_IMAGERY": "false"}).imagery is False


def test_environment_and_overrides() -> None:
    env = {
        "COMMHUB_PORT": "9000",
        "COMMHUB_RATE_LIMIT": "7.5",
        "COMMHUB_DATA_DIR": "/srv/hub",
        "COMMHUB_ICE_SERVERS": '[{"urls": ["stun:127.0.0.1:3478"]}]',
    }
    s = Settings.load({"port": 9100}, env=env)
    assert s.port == 9100  # a flag beats the environment
    assert s.rate_limit == 7.5 and s.data_dir == Path("/srv/hub")
    assert s.ice_servers == [{"urls": ["stun:127.0.0.1:3478"]}]


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"COMMHUB_PORT": "eighty"}, "port"),
        ({"COMMHUB_PORT": "70000"}, "port"),
        ({"COMMHUB_RATE_LIMIT": "0"}, "rate_limit"),
        ({"COMMHUB_SECRET": "short"}, "secret"),
        ({"COMMHUB_ICE_SERVERS": '{"urls": 1}'}, "ice_servers"),
        ({"COMMHUB_ICE_SERVERS": '[{"url": "stun:x"}]'}, "ice_servers"),
        ({"COMMHUB_LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], name: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.load(env=env)
    assert f"COMMHUB_{name.upper()}" in str(info.value)


def test_secret_generated_once(tmp_path: Path) -> None:
    s = Settings.load({"data_dir": tmp_path}, env={})
    first, created = s.resolve_secret()
    again, created_again = s.resolve_secret()
    assert created and not created_again and first == again and len(first) >= 32
    assert (tmp_path / "secret").stat().st_mode & 0o777 == 0o600


def test_serve_refuses_bad_setting_at_start(tmp_path: Path) -> None:
    proc = run_cli(
        "serve",
        "--data-dir",
        str(tmp_path),
        env={"COMMHUB_HEARTBEAT": "-1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "COMMHUB_HEARTBEAT" in proc.stderr


def test_token_command(tmp_path: Path) -> None:
    from commhub import auth

    proc = run_cli(
        "token", "--data-dir", str(tmp_path), "--room", "desk-1", "--identity", "minji",
        "--name", "Minji", "--speak", "ko", "--read", "en", "--ttl", "2h",
        "--grant", "publish", "--grant", "chat",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    secret = (tmp_path / "secret").read_text().strip()
    claims = auth.verify(secret, proc.stdout.strip())
    assert (claims.room, claims.identity, claims.speak, claims.read) == (
        "desk-1",
        "minji",
        "ko",
        "en",
    )
    assert claims.grants == frozenset({"publish", "chat"})
    bad = run_cli("token", "--data-dir", str(tmp_path), "--room", "a b", "--identity", "x")
    assert bad.returncode == 2 and "invalid room name" in bad.stderr
