"""The pieces of configuration reload that need no server: carrying plugin state over, the PID file."""

from __future__ import annotations

import os

import pytest
from aiohttp import web

from gateway.keys import GATEWAY
from gateway.loader import load_data
from gateway.pid_file import PidFile, signal_reload
from gateway.plugin_manager import carry_over
from gateway.runtime import Gateway
from tests.conftest import make_config

STATE: web.AppKey[object] = web.AppKey("test.state")


def generation(previous: Gateway | None = None) -> Gateway:
    loaded = load_data(make_config(), {})
    gw = Gateway(loaded.config, loaded.pm, previous=previous)
    gw.app = web.Application()
    gw.app[GATEWAY] = gw
    return gw


def test_carry_over_keeps_the_object_only_while_its_settings_are_equal():
    first = generation()
    first.app[STATE] = a = carry_over(first.app, STATE, {"limit": 1}, object)
    second = generation(first)
    assert carry_over(second.app, STATE, {"limit": 1}, object) is a
    second.app[STATE] = a
    third = generation(second)
    assert carry_over(third.app, STATE, {"limit": 2}, object) is not a


def test_unchanged_providers_are_carried_over_and_changed_ones_rebuilt():
    first = generation()
    second = generation(first)
    assert second.registry["mock"] is first.registry["mock"]
    changed = load_data(make_config({"name": "mock", "type": "mock", "models": ["other"]}), {})
    third = Gateway(changed.config, changed.pm, previous=second)
    assert third.registry["mock"] is not second.registry["mock"]


def test_pid_file_is_written_and_removed_only_while_it_is_ours(tmp_path):
    path = tmp_path / "run" / "gw.pid"
    with PidFile(path):
        assert path.read_text().strip() == str(os.getpid())
    assert not path.exists()
    with PidFile(path):
        path.write_text("999999\n")  # another server took the file over
    assert path.read_text() == "999999\n"


def test_signal_reload_explains_a_missing_server(tmp_path):
    with pytest.raises(LookupError, match="no PID file"):
        signal_reload(tmp_path / "missing.pid")
    (tmp_path / "bad.pid").write_text("not a pid")
    with pytest.raises(LookupError, match="cannot read a PID"):
        signal_reload(tmp_path / "bad.pid")
