"""Each service's URL setting accepts only its own schemes, refused at load with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrchain.config import ConfigError
from emrchain.config.node import parse_node_config_text


def records(tmp_path: Path, **settings: str):  # type: ignore[no-untyped-def]
    lines = "\n".join(f'{key} = "{value}"' for key, value in settings.items())
    return parse_node_config_text(
        f"[records]\n{lines}\n", home=tmp_path, source="node.toml"
    ).records


@pytest.mark.parametrize(
    ("key", "url"),
    [
        ("ipfs_api_url", "http://127.0.0.1:5001"),
        ("ipfs_api_url", "https://ipfs.hospital-a.example:5001/"),
        ("redis_url", "redis://127.0.0.1:6379/0"),
        ("redis_url", "rediss://cache.hospital-a.example:6380/2"),
        ("redis_url", "unix:///run/redis/redis.sock"),
    ],
)
def test_each_service_accepts_its_schemes(tmp_path: Path, key: str, url: str) -> None:
    assert getattr(records(tmp_path, **{key: url}), key) == url


@pytest.mark.parametrize(
    ("key", "url", "hint"),
    [
        ("ipfs_api_url", "redis://127.0.0.1:6379/0", "redis:// URLs belong in redis_url"),
        ("ipfs_api_url", "unix:///run/ipfs.sock", "http:// or https://"),
        ("ipfs_api_url", "http://user:secret@127.0.0.1:5001", "without a user or password"),
        ("redis_url", "http://127.0.0.1:5001", "http:// URLs belong in ipfs_api_url"),
        ("redis_url", "https://127.0.0.1:6379", "rediss://"),
        ("redis_url", "redis://:secret@127.0.0.1:6379/0", "redis_password_environment_variable"),
        ("redis_url", "redis://127.0.0.1:6379/db", "redis://host[:port][/db]"),
    ],
)
def test_a_url_of_the_wrong_service_or_with_a_secret_is_refused_at_load(
    tmp_path: Path, key: str, url: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        records(tmp_path, **{key: url})
    message = str(refused.value)
    assert f"[records] {key}" in message and hint in message


def test_a_tls_ca_file_needs_a_rediss_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="only used with a rediss:// redis_url"):
        records(tmp_path, redis_url="redis://127.0.0.1:6379/0", redis_tls_ca_file="/etc/ca.pem")
    section = records(
        tmp_path, redis_url="rediss://127.0.0.1:6380/0", redis_tls_ca_file="/etc/ca.pem"
    )
    assert section.redis_tls_ca_file == "/etc/ca.pem"
