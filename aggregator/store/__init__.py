"""Persistence: the SQLite store and retention."""
