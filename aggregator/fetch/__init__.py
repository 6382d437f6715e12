"""Fetching sources over HTTP (and file: URLs), politely and within limits."""
