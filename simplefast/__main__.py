import sys

from simplefast.server.cli import main

sys.exit(main())
