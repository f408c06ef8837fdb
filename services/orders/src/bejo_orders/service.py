"""The orders use cases over one repository and bus: checkout, queries, transitions, red flags.

A thin holder so that the routes, the consumers and the composition root share one object."""

from __future__ import annotations

from bejo_kit.bus import Bus

from .auditing import RedFlags
from .checkout import Checkout
from .queries import Queries
from .repository import Repository
from .settings import OrdersSettings
from .transitions import Transitions


class OrdersService:
    def __init__(self, repo: Repository, bus: Bus, settings: OrdersSettings) -> None:
        self.repo = repo
        self.settings = settings
        self.checkout = Checkout(repo, bus, settings)
        self.queries = Queries(repo, settings)
        self.transitions = Transitions(repo, bus, settings)
        self.redflags = RedFlags(repo, settings)
