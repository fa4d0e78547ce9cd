"""``python -m batch_processor status|export|dashboard PATH``: see `batch_processor.cli`."""
from __future__ import absolute_import, division, print_function

import sys

from batch_processor.cli import main

if __name__ == "__main__":
    sys.exit(main())
