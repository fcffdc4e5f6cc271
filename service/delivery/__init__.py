"""Delivery: the ledger of (issue, subscriber) rows, and the workers that send them."""
