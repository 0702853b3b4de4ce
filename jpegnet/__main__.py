"""`python -m jpegnet ...` (and `torchrun ... -m jpegnet train ...`): the `jpegnet` command."""
import sys

from .cli import main

sys.exit(main())
