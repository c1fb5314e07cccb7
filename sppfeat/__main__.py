"""`python -m sppfeat` and the `sppfeat` command."""

import sys


def run() -> None:
    """The command line; Ctrl-C while it starts (imports) is one line too."""
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("sppfeat: interrupted", file=sys.stderr)
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
