"""Load pipelines from any weight source and run every task instrumented per component."""

from diffprof.engine.engine import Engine, GenerationRequest, GenerationResult, LoadInfo
from diffprof.engine.switches import Optimizations
from diffprof.engine.schedulers import SCHEDULERS
from diffprof.engine.timing import CallTiming

__all__ = ["SCHEDULERS", "CallTiming", "Engine", "GenerationRequest", "GenerationResult", "LoadInfo", "Optimizations"]
