"""``python -m agents.bench``: the ``fpo-bench`` command."""

import sys

from agents.bench.cli import main

if __name__ == "__main__":  # importing the module (the API reference's scan does) runs nothing
    sys.exit(main())
