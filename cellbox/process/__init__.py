"""Worker processes as the server sees them.

``worker`` (one worker's process handle and its frames) · ``zygote_client`` (start a
zygote, have it fork workers) · ``sandbox_calls`` (the async facade over the sandbox).
"""
