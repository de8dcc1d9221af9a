"""Config files: YAML, TOML or JSON (by extension) into one mapping; a parse error names the line."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from diffprof.errors import ConfigError


def _parse_position(exc: Exception) -> str:
    """``, line L column C`` of a YAML or JSON parse error; YAML keeps it in a mark on a later line
    of its message, which the one-line error would drop (tomllib names the line in its message)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        return f", line {mark.line + 1} column {mark.column + 1}"
    if isinstance(exc, json.JSONDecodeError):
        return f", line {exc.lineno} column {exc.colno}"
    return ""


def read_config_file(path: str | Path, keys: Collection[str] = ()) -> dict[str, Any]:
    """The file's mapping; one that nests everything under a single top-level key that is not one of
    ``keys`` (as SEOConfig files do) is unwrapped."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {str(path)!r} {what}", "give the path of a .yaml, .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path.name} is not UTF-8 text (byte {exc.start})", "save the config as UTF-8 YAML, TOML or JSON") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            try:
                import tomllib
            except ImportError as exc:  # Python 3.10
                raise ConfigError("TOML configs need Python >= 3.11", "use YAML or JSON, or upgrade Python") from exc
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path.name!r} has an unknown extension", "use .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # parse errors of any of the three formats
        raise ConfigError(f"cannot parse {path.name}{_parse_position(exc)}: {str(exc).splitlines()[0]}", "fix the syntax at that line") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping of keys to values, not {type(data).__name__}", "e.g. a YAML file of lines such as `steps: 20`")
    # SEOConfig files often nest everything under one top-level key
    if len(data) == 1 and isinstance(next(iter(data.values())), dict) and next(iter(data)) not in keys:
        data = next(iter(data.values()))
    return data
