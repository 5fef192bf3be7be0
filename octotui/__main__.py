import sys

from octotui.cli import main

sys.exit(main())
