"""CloudEvents 1.0 style envelope shared by every producer and consumer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class EventData(BaseModel):
    """Base of every event payload. `TYPE` is the versioned CloudEvents type and the routing key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    TYPE: ClassVar[str]

    def subject(self) -> str | None:
        """The aggregate id the event is about; subclasses override."""
        return None

    def pemda_scope(self) -> str | None:
        """The pemda the event belongs to: only people of that pemda, or of a pemda above it, may
        see it. None for an event of no pemda (the public catalog feed), which reaches no reader
        whose view is limited to a pemda. Every other event type overrides this."""
        return None


class Envelope(BaseModel):
    """What travels on the bus. Field names follow CloudEvents 1.0 (lower-case attribute names)."""

    # Fields with defaults are always sent, so the published schema lists them as required.
    model_config = ConfigDict(extra="ignore", json_schema_serialization_defaults_required=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    source: str
    type: str
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    correlationid: str | None = None
    causationid: str | None = None

    @classmethod
    def wrap(
        cls,
        data: EventData,
        *,
        source: str,
        correlationid: str | None = None,
        causationid: str | None = None,
    ) -> Envelope:
        return cls(
            source=source,
            type=data.TYPE,
            subject=data.subject(),
            data=data.model_dump(mode="json"),
            correlationid=correlationid,
            causationid=causationid,
        )
