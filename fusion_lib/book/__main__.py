"""``python -m fusion_lib.book run|build|sync-colab ...``: see ``fusion_lib.book.tooling.build``."""

import sys

from fusion_lib.book.tooling.build import main

sys.exit(main())
