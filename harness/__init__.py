"""harness: discretization-aware differentiable NAS on NAS-Bench-201."""

__version__ = "0.1.0"
