from __future__ import annotations

from pathlib import Path

import pytest

from ledger.config import LedgerConfig
from ledger.errors import ConfigError
from ledger.money import MICRO

URL = "postgresql+psycopg://gpuledger_app:s3cret@db/gpuledger"


def test_defaults_and_masking() -> None:
    config = LedgerConfig.from_env({"GPULEDGER_DATABASE_URL": URL})
    assert config.currency == "CNY"
    assert config.timezone.key == "Asia/Shanghai"
    assert (config.thresholds.warning, config.thresholds.limited, config.thresholds.blocked) == (100 * MICRO,
                                                                                                10 * MICRO, 0)
    assert "s3cret" not in repr(config)
    assert config.database_url.reveal() == URL


@pytest.mark.parametrize(("env", "key"), [
    ({}, "GPULEDGER_DATABASE_URL"),
    ({"GPULEDGER_CURRENCY": "cny"}, "GPULEDGER_CURRENCY"),
    ({"GPULEDGER_TIMEZONE": "Mars/Olympus"}, "GPULEDGER_TIMEZONE"),
    ({"GPULEDGER_TIER_LIMITED": "ten"}, "GPULEDGER_TIER_LIMITED"),
    ({"GPULEDGER_TIER_WARNING": "5"}, "GPULEDGER_TIER_WARNING"),
])
def test_bad_values_fail_fast_naming_the_key(env: dict[str, str], key: str) -> None:
    if key != "GPULEDGER_DATABASE_URL":
        env = {"GPULEDGER_DATABASE_URL": URL, **env}
    with pytest.raises(ConfigError) as caught:
        LedgerConfig.from_env(env)
    assert caught.value.details["key"] == key


def test_secret_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "url"
    secret.write_text(URL + "\n")
    config = LedgerConfig.from_env({"GPULEDGER_DATABASE_URL_FILE": str(secret), "GPULEDGER_TIER_BLOCKED": "-5"})
    assert config.database_url.reveal() == URL
    assert config.thresholds.blocked == -5 * MICRO
    with pytest.raises(ConfigError) as caught:
        LedgerConfig.from_env({"GPULEDGER_DATABASE_URL_FILE": str(tmp_path / "missing")})
    assert caught.value.details["key"] == "GPULEDGER_DATABASE_URL_FILE"
