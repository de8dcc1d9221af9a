"""The one configuration schema: :class:`RunConfig` feeds CLI flags, YAML/TOML/JSON files and Python.

Layer 2: imports nothing above ``models``/``profiler`` (layer 1). ``schema`` holds the dataclass and
its field metadata, ``spec`` the per-field checks and text conversion, ``values`` the static
choices, ``aliases`` the ``SEOConfig`` names, ``files`` the config file formats.
"""

from diffprof.config.aliases import SEO_ALIASES
from diffprof.config.files import read_config_file
from diffprof.config.schema import RunConfig
from diffprof.config.spec import Spec, from_text, scalar_from_text, split_values
from diffprof.config.values import (
    DEVICE_DEPENDENT,
    DEVICES,
    PRECISION_ALIASES,
    PRECISIONS,
    QUALITY_CHOICES,
    TASKS,
    check_precision,
    check_size,
    parse_resolution,
)
from diffprof.request import DEFAULT_PROMPT

__all__ = [
    "DEFAULT_PROMPT",
    "DEVICES",
    "DEVICE_DEPENDENT",
    "PRECISIONS",
    "PRECISION_ALIASES",
    "QUALITY_CHOICES",
    "SEO_ALIASES",
    "TASKS",
    "RunConfig",
    "Spec",
    "check_precision",
    "check_size",
    "from_text",
    "parse_resolution",
    "read_config_file",
    "scalar_from_text",
    "split_values",
]
