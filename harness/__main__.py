"""Entry point for ``python -m harness``."""

import os
import sys

from harness.cli import main

try:
    raise SystemExit(main())
except BrokenPipeError:
    # the reader left early (``python -m harness methods | head -3``): not an error worth a
    # traceback; stdout is pointed at devnull so the interpreter's final flush stays quiet
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(1) from None
