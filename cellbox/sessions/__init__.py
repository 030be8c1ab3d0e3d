"""Contexts and what runs in them.

``registry`` (the live contexts: create, find, delete, restart, reap) · ``context`` (one
context and its worker) · ``execution`` (one run of code: the event stream; it talks to the
context through a small interface) · ``pools`` (warm workers, one pool per runtime).
"""
