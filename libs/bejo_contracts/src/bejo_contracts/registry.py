"""Look-up from a CloudEvents type to its payload model."""

from __future__ import annotations

from .envelope import Envelope, EventData

_MODELS: dict[str, type[EventData]] = {}


def event(cls: type[EventData]) -> type[EventData]:
    """Class decorator: register an event model under its TYPE."""
    if cls.TYPE in _MODELS:
        raise ValueError(f"event type registered twice: {cls.TYPE}")
    _MODELS[cls.TYPE] = cls
    return cls


def model_for(event_type: str) -> type[EventData]:
    try:
        return _MODELS[event_type]
    except KeyError:
        raise KeyError(f"unknown event type {event_type!r}") from None


def all_models() -> dict[str, type[EventData]]:
    return dict(_MODELS)


def parse_data(envelope: Envelope) -> EventData:
    """Validate an envelope's data against the model of its type."""
    return model_for(envelope.type).model_validate(envelope.data)
