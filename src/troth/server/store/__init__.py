"""Stores: the transaction interface the core runs on, and its SQL implementations."""

from troth.server.store.base import Store, StoreError, TaskRow, Tx

__all__ = ["Store", "StoreError", "TaskRow", "Tx"]
