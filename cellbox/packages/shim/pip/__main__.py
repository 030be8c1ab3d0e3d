import sys

from cellbox.packages.pip_command import pip_main

sys.exit(pip_main(sys.argv[1:]))
