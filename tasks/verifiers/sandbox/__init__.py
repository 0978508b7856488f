"""Process sandbox for untrusted code (pool, worker, child), kept apart from the reward modules."""

from tasks.verifiers.sandbox.pool import ISOLATION_LEVELS, RunLimits, SandboxPool, detect_isolation, get_pool

__all__ = ["ISOLATION_LEVELS", "RunLimits", "SandboxPool", "detect_isolation", "get_pool"]
