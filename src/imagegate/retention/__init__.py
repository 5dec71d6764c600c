"""Retention: what ImageGate deletes once it is past its time (see :mod:`.sweeper`)."""

from imagegate.retention.sweeper import Policy, Sweeper, Swept, policy_of

__all__ = ["Policy", "Sweeper", "Swept", "policy_of"]
