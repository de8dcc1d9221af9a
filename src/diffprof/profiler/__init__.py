"""diffprof's profiler: nested, labelled, thread-safe operations at a chosen level of detail.

    from diffprof.profiler import Profiler
    profiler = Profiler(level="standard")
    with profiler.profile_operation("diffusion_image_generation", "model_inference", steps=30):
        pipe(prompt)
    profile = profiler.profile()          # one synchronize; GPU times resolved
    profile.stats()                       # per (category, name): median, p90, IQR, ...
    get_exporter("chrome").write(profile, "trace.json")
"""

from diffprof.profiler.exporters import EXPORTERS, get_exporter
from diffprof.profiler.profiler import Operation, Profiler, check_level, measure_overhead
from diffprof.profiler.record import LEVELS, Level, OperationRecord, OperationStats, Profile
from diffprof.profiler.trackers import cupti_left_attached

__all__ = [
    "EXPORTERS",
    "LEVELS",
    "Level",
    "Operation",
    "OperationRecord",
    "OperationStats",
    "Profile",
    "Profiler",
    "check_level",
    "cupti_left_attached",
    "get_exporter",
    "measure_overhead",
]
