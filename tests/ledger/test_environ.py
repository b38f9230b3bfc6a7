"""The shared environment reader (ledger.environ): each getter's values, defaults and refusals, secrets."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

from ledger.environ import Config, Secret
from ledger.errors import ConfigError, LedgerError
from ledger.money import MICRO


def refused(env: Config, read: str, *args: object, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        getattr(env, read)(*args, **kwargs)
    return caught.value


def test_absent_keys_give_the_default_and_the_prefix_is_the_packages() -> None:
    env = Config({"GPULEDGER_API_PORT": "9000", "PORT": "1"}, "GPULEDGER_API_")
    assert env.key("PORT") == "GPULEDGER_API_PORT"
    assert "PORT" in env and "HOST" not in env
    assert env.integer("PORT", 8470, minimum=1, maximum=65535) == 9000
    assert env.text("HOST", "127.0.0.1") == "127.0.0.1"
    assert Config({}).text("CURRENCY", None) is None
    # set but empty is a value, not an absent key
    assert Config({"GPULEDGER_RECHARGE_HINT": ""}).text("RECHARGE_HINT", "ask") == ""


@pytest.mark.parametrize(("raw", "value"), [("0", 0), ("64", 64), (" 7\n", 7), ("65535", 65535)])
def test_integer_within_bounds(raw: str, value: int) -> None:
    assert Config({"GPULEDGER_N": raw}).integer("N", 1, maximum=65535) == value


@pytest.mark.parametrize("raw", ["", "-1", "+3", "1.5", "1e3", "ten", "²", "65536", "0x10"])
def test_integer_refusals_name_the_key_and_the_bounds(raw: str) -> None:
    error = refused(Config({"GPULEDGER_N": raw}), "integer", "N", 1, maximum=65535)
    assert (error.key, error.details["key"]) == ("GPULEDGER_N", "GPULEDGER_N")
    assert error.reason == f"must be an integer in [0, 65535], got {raw!r}"
    assert str(error) == f"configuration GPULEDGER_N: {error.reason}"
    assert isinstance(error, LedgerError) and error.code == "config_error"


def test_integer_lower_bound_only() -> None:
    assert refused(Config({"GPULEDGER_N": "0"}), "integer", "N", 1, minimum=1).reason == \
        "must be an integer >= 1, got '0'"


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                            ("0", False), ("False", False), ("no", False), ("off", False),
                                            ("", False)])
def test_boolean_words(raw: str, value: bool) -> None:
    assert Config({"GPULEDGER_DRY_RUN": raw}).boolean("DRY_RUN", not value) is value


def test_boolean_refusal_lists_the_words() -> None:
    error = refused(Config({"GPULEDGER_DRY_RUN": "maybe"}), "boolean", "DRY_RUN", False)
    assert error.reason == "must be true or false (1/on/true/yes or 0/false/no/off), got 'maybe'"


def test_amount_is_exact_micro_units() -> None:
    env = Config({"GPULEDGER_TIER_WARNING": "0.000001", "GPULEDGER_TIER_BLOCKED": "-5", "GPULEDGER_BAD": "1.0000001"})
    assert env.amount("TIER_WARNING", 0) == 1
    assert env.amount("TIER_BLOCKED", 0) == -5 * MICRO
    assert env.amount("TIER_LIMITED", 10 * MICRO) == 10 * MICRO
    assert refused(env, "amount", "BAD", 0).key == "GPULEDGER_BAD"


def test_choice_returns_the_literal() -> None:
    splits: tuple[Literal["memory", "equal"], ...] = ("memory", "equal")
    assert Config({"GPULEDGER_GPU_SPLIT": "equal"}).choice("GPU_SPLIT", splits, "memory") == "equal"
    assert Config({}).choice("GPU_SPLIT", splits, "memory") == "memory"
    for raw in ("random", "Equal", " equal"):
        error = refused(Config({"GPULEDGER_GPU_SPLIT": raw}), "choice", "GPU_SPLIT", splits, "memory")
        assert error.reason == f"must be one of memory, equal, got {raw!r}"


def test_items_split_on_commas() -> None:
    assert Config({"GPULEDGER_L": " a, b ,,c "}).items("L") == ("a", "b", "c")
    assert Config({"GPULEDGER_L": " , "}).items("L") == ()
    assert Config({}).items("L") == ()


def test_get_turns_a_parsers_value_error_into_the_keys_config_error() -> None:
    def seconds(text: str) -> float:
        raise ValueError("must be a positive, finite number")

    error = refused(Config({"GPULEDGER_TICK_SECONDS": "nan"}), "get", "TICK_SECONDS", seconds, 60.0)
    assert (error.key, error.reason) == ("GPULEDGER_TICK_SECONDS", "must be a positive, finite number")
    assert Config({}).get("TICK_SECONDS", seconds, 60.0) == 60.0


def test_secret_is_masked_and_revealed_on_request() -> None:
    secret = Secret("postgresql://app:s3cret@db/x")
    assert "s3cret" not in repr(secret) and "s3cret" not in str(secret) and "s3cret" not in f"{secret}"
    assert "s3cret" not in repr([secret]) and "s3cret" not in repr({"url": secret})
    assert secret.reveal() == "postgresql://app:s3cret@db/x"
    assert secret == Secret("postgresql://app:s3cret@db/x") and secret != Secret("other")
    with pytest.raises(AttributeError):
        secret._value = "changed"  # type: ignore[misc]


def test_secret_from_the_key_then_the_file(tmp_path: Path) -> None:
    file = tmp_path / "password"
    file.write_text("from-file\n")
    assert Config({"GPULEDGER_SMTP_PASSWORD_FILE": str(file)}).secret("SMTP_PASSWORD") == Secret("from-file")
    both = {"GPULEDGER_SMTP_PASSWORD": "inline", "GPULEDGER_SMTP_PASSWORD_FILE": str(file)}
    assert Config(both).secret("SMTP_PASSWORD") == Secret("inline")
    assert Config({}).secret("SMTP_PASSWORD") is None


def test_an_unreadable_secret_file_names_the_file_key(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    error = refused(Config({"GPULEDGER_DATABASE_URL_FILE": str(missing)}), "secret", "DATABASE_URL")
    assert error.key == "GPULEDGER_DATABASE_URL_FILE"
    assert error.reason == f"cannot read {str(missing)!r}: {os.strerror(2)}"
