import sys

from luzia.cli.main import main

sys.exit(main())
