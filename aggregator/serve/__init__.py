"""Serving the published folder over HTTP, and the status page."""
