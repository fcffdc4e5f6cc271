"""Chapar: newsletter delivery for right-to-left news sites."""
