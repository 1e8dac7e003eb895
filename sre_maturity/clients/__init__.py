"""Thin HTTP clients: Rally, Confluence, and the retry policy they share."""
