"""Turning fetched bytes into plain entries: feeds of every dialect, safely."""
