"""Exit statuses cellbox's own processes use (the TypeScript worker mirrors INTERNAL_ERROR).

Beyond these, a worker's status follows the shell's rule: 128+N means death by signal N.
"""

SETUP_FAILED = 125  # a launch chain or zygote child could not confine the worker
INTERNAL_ERROR = 70  # EX_SOFTWARE: a worker's own machinery failed (its sender, io thread)
