"""diffprof: profile, benchmark and tune Hugging Face diffusers pipelines."""

__version__ = "0.1.0"
