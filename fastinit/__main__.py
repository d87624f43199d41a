"""``python -m fastinit``: the ``fastinit`` command line."""
import sys

from fastinit.cli import main

if __name__ == "__main__":
    sys.exit(main())
