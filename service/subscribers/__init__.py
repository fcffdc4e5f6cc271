"""Readers: the subscriber store, consent, and the subscribe/confirm/unsubscribe flows."""
