"""Same as ``marketjax train``: ``python scripts/train.py CONFIG.yaml [key=value]``."""

import sys

from marketjax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
