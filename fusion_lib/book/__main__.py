"""``python -m fusion_lib.book run|build|sync-colab ...``: see ``fusion_lib.book.build``."""

import sys

from fusion_lib.book.build import main

sys.exit(main())
