"""Umbrella import for the whole toolkit (filled in by the app, issue 7)."""
