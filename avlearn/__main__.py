import sys

from avlearn.cli import main

sys.exit(main())
