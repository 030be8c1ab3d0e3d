"""The part of pip's layout its console scripts import; see ``cli/main.py``."""
