"""The one test harness (importable as `support`): run apps with settings of their own, talk HTTP to
them, wait on conditions. Each service's tests add only what is theirs (fixture payloads, observers)."""

from .apps import AppSpec, Running, drop_databases, run_apps, serve, service_settings
from .http import Api, Reply
from .identity import bearer, token
from .waiting import holds_for, wait_until

__all__ = [
    "Api",
    "AppSpec",
    "Reply",
    "Running",
    "bearer",
    "drop_databases",
    "holds_for",
    "run_apps",
    "serve",
    "service_settings",
    "token",
    "wait_until",
]
