"""bejo's event contracts: the envelope, one model per event type, and the bus topology."""

from . import catalog, notifications, orders, payments  # noqa: F401  (registers every event model)
from .common import SYSTEM, WIB, Actor, PaymentMethod, Role
from .envelope import Envelope, EventData
from .registry import all_models, model_for, parse_data

__all__ = [
    "SYSTEM",
    "WIB",
    "Actor",
    "Envelope",
    "EventData",
    "PaymentMethod",
    "Role",
    "all_models",
    "model_for",
    "parse_data",
]
