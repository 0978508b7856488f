"""Process sandbox for untrusted code, kept apart from the reward modules.

``isolation`` (levels and worker commands), ``seccomp`` (BPF filters), ``uids`` (the run uid
range), ``pool`` (pre-started workers, retries), ``worker`` / ``child`` (stdlib-only code that
runs inside the sandbox) and ``wire`` (plain-data encoding across the boundary).
"""

from tasks.verifiers.sandbox.isolation import LEVELS
from tasks.verifiers.sandbox.pool import (
    IsolationUnavailable,
    RunLimits,
    SandboxError,
    SandboxPool,
    get_pool,
    isolation_problem,
)
from tasks.verifiers.sandbox.uids import UidRange

__all__ = ["LEVELS", "IsolationUnavailable", "RunLimits", "SandboxError", "SandboxPool", "UidRange", "get_pool",
           "isolation_problem"]
