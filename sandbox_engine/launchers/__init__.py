"""Launchers that run inside a sandbox, in a language's own interpreter (see sandbox_engine.launch).

They are read as text and passed on the command line, so the images stay plain.
"""
