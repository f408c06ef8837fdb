"""Message rendering with jinja2: one template per notification kind and locale, Bahasa Indonesia
first and English as the fallback, inside a text and an HTML layout per locale.

A kind's template (`templates/<locale>/<kind>.j2`) holds two blocks, `subject` and `summary`;
the layouts (`_layout.txt.j2`, `_layout.html.j2`) add the order or payment facts around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, Template, pass_context, select_autoescape
from jinja2.runtime import Context

from bejo_contracts.messages import PAYMENT_METHOD, reason_text

from .domain import LOCALES, Locale, RecipientRole, format_rupiah, format_wib

FALLBACK_LOCALE: Locale = "en"


@dataclass(frozen=True)
class RenderedMessage:
    locale: Locale
    subject: str
    summary: str
    text: str
    html: str


def _family(event_type: str) -> str:
    if event_type.startswith("bejo.orders."):
        return "order"
    if event_type.startswith("bejo.payments."):
        return "payment"
    return "other"


@pass_context
def _wib(context: Context, value: datetime | str) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return format_wib(moment, context.get("locale", FALLBACK_LOCALE))


class Renderer:
    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("bejo_notifications", "templates"),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._env.filters["rupiah"] = format_rupiah
        self._env.filters["wib"] = _wib
        # Indonesian wording of codes and system reasons, from the one catalogue in bejo_contracts.
        self._env.filters["alasan"] = reason_text
        self._env.filters["metode"] = lambda method: PAYMENT_METHOD.get(method, method)

    def _select(self, locale: Locale, name: str) -> Template:
        """The template in the recipient's locale, else in English."""
        chain = [f"{locale}/{name}"] if locale == FALLBACK_LOCALE else [f"{locale}/{name}", f"{FALLBACK_LOCALE}/{name}"]
        return self._env.select_template(chain)

    def render(
        self,
        kind: str,
        locale: Locale,
        data: Mapping[str, Any],
        *,
        event_type: str,
        event_time: datetime,
        recipient_role: RecipientRole,
    ) -> RenderedMessage:
        if locale not in LOCALES:
            locale = FALLBACK_LOCALE
        variables: dict[str, Any] = {
            **data,
            "locale": locale,
            "recipient_role": recipient_role,
            "family": _family(event_type),
            "event_time": event_time,
        }
        template = self._select(locale, f"{kind}.j2")
        context = template.new_context(variables)
        # Headers and inbox titles are one line whatever the template's whitespace.
        subject = " ".join("".join(template.blocks["subject"](context)).split())
        summary = " ".join("".join(template.blocks["summary"](context)).split())
        parts = {**variables, "subject": subject, "summary": summary}
        text = self._select(locale, "_layout.txt.j2").render(parts)
        html = self._select(locale, "_layout.html.j2").render(parts)
        return RenderedMessage(locale, subject, summary, text, html)
