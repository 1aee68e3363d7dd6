"""Loading ``gateway.yaml``: YAML → interpolation → core models + plugin sections → checks that
need the installed plugins and adapters. Every problem is reported with its field path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy
import yaml
from pydantic import BaseModel, ValidationError

from gateway.config import CORE_SECTIONS, GatewayConfig, interpolate, pydantic_problems, raise_if
from gateway.dialect import installed_dialects
from gateway.errors import ConfigError
from gateway.plugin_manager import disable, make_plugin_manager, plugin_names
from gateway.registry import installed_adapters, load_adapter_class
from gateway.routing import resolve_name

DEFAULT_CONFIG = "gateway.yaml"
CONFIG_ENV = "LLM_GATEWAY_CONFIG"


@dataclass(slots=True)
class Loaded:
    config: GatewayConfig
    pm: pluggy.PluginManager
    path: Path | None = None  # the file it came from: a reload reads it again
    env: dict[str, str] | None = None  # the variables it was interpolated with (None: os.environ)


def config_path(path: str | None) -> Path:
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read config file {path}: {exc.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Position only: the offending line may hold a literal key.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([("", f"{path} is not valid YAML{where}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([("", f"{path} must contain a mapping at the top level")])
    return data


def load(path: str | Path | None = None, env: dict[str, str] | None = None) -> Loaded:
    where = config_path(str(path) if path else None)
    loaded = load_data(read_yaml(where), env)
    loaded.path, loaded.env = where.resolve(), env
    return loaded


def load_data(raw: dict[str, Any], env: dict[str, str] | None = None) -> Loaded:
    data, missing = interpolate(raw, env)
    pm = make_plugin_manager()
    problems: list[tuple[str, str]] = []
    sections = claimed_sections(pm)
    validated: dict[str, Any] = {}
    for key, value in data.items():
        if key in CORE_SECTIONS:
            continue
        if key not in sections:
            known = ", ".join(sorted(set(sections) | CORE_SECTIONS))
            problems.append((str(key), f"unknown section; no installed plugin claims it (known: {known})"))
            continue
        try:
            validated[key] = sections[key].model_validate(value if value is not None else {})
        except ValidationError as exc:
            problems += pydantic_problems(exc, str(key))
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate({k: v for k, v in data.items() if k in CORE_SECTIONS})
    except ValidationError as exc:
        problems += pydantic_problems(exc)
    if config is not None:
        problems += check_providers(config)
        problems += check_aliases(config)
        problems += check_plugins(config, pm)
        problems += [(path, msg) for path, msg in missing if not in_disabled(path, config)]
    if config is not None and not problems:
        problems += check_across_sections(config.model_copy(update={"sections": validated}), pm)
    raise_if(problems)
    assert config is not None
    disable(pm, config.plugins.disabled)
    if config.auth.keys and not pm.hook.gateway_authenticate.get_hookimpls():
        # Keys with nothing to check them would lock every client out (the core fails closed).
        raise ConfigError([("auth.keys", "client keys are configured but no enabled plugin authenticates "
                                         "(is the auth plugin in plugins.disabled?)")])
    return Loaded(config.model_copy(update={"sections": validated}), pm)


def claimed_sections(pm: pluggy.PluginManager) -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for result in pm.hook.gateway_config_sections():
        sections.update(result or {})
    return sections


def check_across_sections(config: GatewayConfig, pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """Each plugin's ``gateway_check_config`` problems, disabled plugins included: a section stays
    valid (or not) whether or not its plugin runs, as in ``claimed_sections``."""
    problems: list[tuple[str, str]] = []
    for result in pm.hook.gateway_check_config(config=config):
        problems += result or []
    return problems


def in_disabled(path: str, config: GatewayConfig) -> bool:
    return any(not p.enabled and path.startswith(f"providers[{i}]") for i, p in enumerate(config.providers))


def check_providers(config: GatewayConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    installed = installed_adapters()
    seen: set[str] = set()
    for i, p in enumerate(config.providers):
        if p.name in seen:
            problems.append((f"providers[{i}].name", f"duplicate provider name {p.name!r}"))
        seen.add(p.name)
        if p.type not in installed:
            problems.append((f"providers[{i}].type",
                             f"unknown provider type {p.type!r}; installed: {', '.join(sorted(installed))}"))
            continue
        try:
            cls = load_adapter_class(p.type)
        except Exception as exc:
            problems.append((f"providers[{i}].type", f"adapter {p.type!r} failed to load: {exc}"))
            continue
        try:
            cls.options_model.model_validate(p.options)
        except ValidationError as exc:
            problems += pydantic_problems(exc, f"providers[{i}].options")
        if not (p.base_url or cls.default_base_url):
            problems.append((f"providers[{i}].base_url", "required for this provider type"))
        if p.enabled and cls.requires_api_key and not p.key:
            problems.append((f"providers[{i}].api_key", "required for this provider type"))
        problems += check_native_dialects(p.native_dialects or [], i)
    return problems


def check_native_dialects(names: list[str], i: int) -> list[tuple[str, str]]:
    installed = installed_dialects()
    return [(f"providers[{i}].native_dialects[{j}]",
             f"unknown dialect {name!r}; installed: {', '.join(sorted(installed))}")
            for j, name in enumerate(names) if name not in installed]


def check_aliases(config: GatewayConfig) -> list[tuple[str, str]]:
    providers = {p.name: p for p in config.providers}
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, alias in enumerate(config.models):
        if alias.name in seen:
            problems.append((f"models[{i}].name", f"duplicate alias {alias.name!r}"))
        seen.add(alias.name)
        for j, target in enumerate(alias.targets):
            if not resolve_name(target, providers, {}):
                problems.append((f"models[{i}].targets[{j}]",
                                 f"{target!r} names no configured provider or model"))
    return problems


def check_plugins(config: GatewayConfig, pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    known = plugin_names(pm)
    return [
        (f"plugins.disabled[{i}]", f"unknown plugin {name!r}; installed: {', '.join(known)}")
        for i, name in enumerate(config.plugins.disabled) if name not in known
    ]
