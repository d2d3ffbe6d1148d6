"""``python -m avlearn.train.finetune``: the same as ``avlearn finetune``."""

import sys

from avlearn.train.finetune.cli import main

sys.exit(main())
