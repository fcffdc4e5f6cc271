"""Digests: choosing the week's articles, rendering the issue once, the schedule."""
