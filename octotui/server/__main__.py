import sys

from octotui.server.cli import main

sys.exit(main(sys.argv[1:]))
