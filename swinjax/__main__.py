"""``python -m swinjax ...``: see :mod:`swinjax.cli`."""

import sys

from swinjax.cli import main

if __name__ == "__main__":
    sys.exit(main())
