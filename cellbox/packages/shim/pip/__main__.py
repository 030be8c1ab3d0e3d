import sys

try:
    from cellbox.packages.pip_command import pip_main
except ImportError as exc:  # another interpreter of the system (/usr/bin/python3)
    sys.stderr.write(
        f"cellbox: this Python cannot install into the context ({exc}); "
        "run `pip install ...` or `python3 -m pip install ...`\n"
    )
    sys.exit(1)

sys.exit(pip_main(sys.argv[1:]))
