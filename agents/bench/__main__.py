import sys

from agents.bench.cli import main

sys.exit(main())
