import sys

from shotline.cli import main

sys.exit(main())
