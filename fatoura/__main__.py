import sys

from fatoura.cli import main

sys.exit(main())
