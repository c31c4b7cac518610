"""`python -m deepgen ...` is the `deepgen` command."""
import sys

from deepgen.cli import main

sys.exit(main())
