"""Command line interface (placeholder, filled in by the training issue)."""


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("fusnet CLI not built yet")
