# sandbox-engine (appended to Debian's sitecustomize): python3 -u puts its text layer right on the
# raw file and keeps only what one write(2) took, and under gVisor a write to a pipe takes 64 KiB
# at most: the rest of a longer one was lost. Each write of an unbuffered stdout or stderr is
# written whole instead, as a buffered stream's is: a program's under se-run, and the Python
# launcher's program, which inherits the launcher's (launchers/python_launcher.py).
def _sandbox_whole_writes():
    import io
    import os
    import sys

    class WholeWrites(io.RawIOBase):
        def __init__(self, fd):
            super().__init__()
            self._fd = fd

        def writable(self):
            return True

        def fileno(self):
            return self._fd

        def isatty(self):
            return os.isatty(self._fd)

        def write(self, data):
            view = memoryview(data).cast("B")
            done = 0
            while done < len(view):
                done += os.write(self._fd, view[done:])
            return done

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(getattr(stream, "buffer", None), io.FileIO):
            whole = io.TextIOWrapper(
                WholeWrites(stream.fileno()),
                encoding=stream.encoding,
                errors=stream.errors,
                line_buffering=stream.line_buffering,
                write_through=True,
            )
            setattr(sys, name, whole)


_sandbox_whole_writes()
del _sandbox_whole_writes
