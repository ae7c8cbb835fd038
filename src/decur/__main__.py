"""``python -m decur`` runs the command line."""

import sys

from decur.cli import main

sys.exit(main())
