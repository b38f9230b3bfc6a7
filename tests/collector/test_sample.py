"""Parsing a node's sample: the facts as they were sent, and a bad document refused naming where it is bad."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest

from collector.charging.samples import BadSample, Sample, parse_sample
from tests.collector.samples import GPU0, proc, sample, to_document

GOOD = sample(60, processes=(proc(500, 1001, 10, 5), proc(501, 1002, 20, 1)), user_cpu={1001: 3},
              gpu_processes=((GPU0, 500, 1 << 30),))


def parsed(document: dict[str, Any]) -> Sample:
    return parse_sample(json.dumps(document).encode())


def test_a_good_sample_keeps_every_fact() -> None:
    raw = json.dumps(to_document(GOOD)).encode()
    got = parse_sample(raw)
    # The document carries no MIG devices, and hardware facts the test sample leaves out.
    assert got == replace(GOOD, sha256=hashlib.sha256(raw).hexdigest(), mig_shares=got.mig_shares,
                          mig_parents=got.mig_parents, hardware=got.hardware)
    assert got.hardware["hostname"] == "gpu01" and not got.mig_shares


def _set(document: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    holder: Any = changed
    for part in path[:-1]:
        holder = holder[part]
    if value is KeyError:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return changed


@pytest.mark.parametrize(("path", "value", "where"), [
    (("processes", 1, "pid"), 0, "processes[1].pid"),
    (("processes", 0, "rss_bytes"), True, "processes[0].rss_bytes"),
    (("processes", 0, "cpu_system_ticks"), 1.5, "processes[0].cpu_system_ticks"),
    (("processes", 0, "uid"), KeyError, "processes[0].uid"),
    (("processes", 1, "user"), "x" * 257, "processes[1].user"),
    (("processes", 0, "start_ticks"), -1, "processes[0].start_ticks"),
    (("processes", 0, "pid"), 2**64, "processes[0].pid"),
    (("processes", 1, "user"), 7, "processes[1].user"),
    (("processes", 1), [1], "processes"),
    (("gpus", 0, "temperature_c"), "hot", "gpus[0].temperature_c"),
    (("gpu_processes", 0, "uid"), -1, "gpu_processes[0].uid"),
    (("user_cpu", 0, "usage_ns"), 2**64, "user_cpu[0].usage_ns"),
    (("node", "boottime_ns"), None, "node.boottime_ns"),
    (("node", "machine_id"), KeyError, "node.machine_id"),
    (("hardware", "cpu", "logical_cpus"), 0, "hardware.cpu.logical_cpus"),
    (("schema_version",), 2, "schema_version"),
])
def test_a_bad_field_is_refused_by_its_path(path: tuple[str | int, ...], value: object, where: str) -> None:
    with pytest.raises(BadSample) as caught:
        parsed(_set(to_document(GOOD), path, value))
    assert caught.value.path == where


def test_optional_facts_may_be_null() -> None:
    document = _set(_set(to_document(GOOD), ("node", "machine_id"), None), ("hardware", "cpu", "logical_cpus"), None)
    got = parsed(document)
    assert (got.machine_id, got.logical_cpus) == (None, 1)


def _with_user(raw_user: bytes) -> bytes:
    return json.dumps(to_document(GOOD)).encode().replace(b'"user": "u1001"', b'"user": ' + raw_user, 1)


@pytest.mark.parametrize("raw_user", [b'"\\ud800"', b'"x\\udc00"', b'"\xed\xa0\x80"', b"NaN", b"Infinity",
                                      b"-Infinity"])
def test_what_postgresql_cannot_store_is_refused(raw_user: bytes) -> None:
    raw = _with_user(raw_user)
    assert raw != json.dumps(to_document(GOOD)).encode()
    with pytest.raises(BadSample) as caught:
        parse_sample(raw)
    assert caught.value.path == "$"


@pytest.mark.parametrize(("raw_user", "user"), [(b'"\\ud83d\\ude00"', "\U0001f600"), (b'"\xed\x95\x9c"', "\ud55c")])
def test_surrogate_pairs_and_hangul_are_kept(raw_user: bytes, user: str) -> None:
    assert parse_sample(_with_user(raw_user)).processes[0].user == user
