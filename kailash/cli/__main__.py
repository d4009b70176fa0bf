import sys

from kailash.cli.main import main

sys.exit(main())
