"""``python -m rlsurgery`` runs the command line."""

import sys

from rlsurgery.cli import main

if __name__ == "__main__":
    sys.exit(main())
