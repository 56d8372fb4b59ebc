"""Execution: the order state machine and manager, the paper fill model, the portfolio."""

from scalper.execution.orders import InvalidTransition, OrderEvent, OrderManager, apply_fill, transition
from scalper.execution.paper import BarFills, PaperBroker
from scalper.execution.portfolio import Portfolio

__all__ = [
    "BarFills",
    "InvalidTransition",
    "OrderEvent",
    "OrderManager",
    "PaperBroker",
    "Portfolio",
    "apply_fill",
    "transition",
]
