"""JSON: the lossless format; :meth:`Profile.load` reads it back into the same objects."""

from __future__ import annotations

import json

from diffprof.profiler.exporters.base import Exporter, register
from diffprof.profiler.record import Profile


@register
class JsonExporter(Exporter):
    name = "json"
    file_extension = "json"

    def render(self, profile: Profile) -> str:
        return json.dumps(profile.to_dict(), indent=1, default=str)
