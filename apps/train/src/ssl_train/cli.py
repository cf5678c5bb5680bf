"""Command-line entry point of ``ssl-train`` (being built, see issue 7)."""


def main() -> None:
    """Run the training app."""
    raise SystemExit("ssl-train is not implemented yet (issue 7).")
