"""Cost tracking: the price table, the ledger, budget reservations and alerts."""
