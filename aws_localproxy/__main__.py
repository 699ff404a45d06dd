"""``python -m aws_localproxy``: the ``localproxy`` console script."""

import sys

from aws_localproxy.cli.localproxy import main

if __name__ == "__main__":
    sys.exit(main())
