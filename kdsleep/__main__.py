import sys

from kdsleep.cli import main

sys.exit(main())
