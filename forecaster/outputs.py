"""Writing the files the commands produce: checked before the work, replaced atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forecaster.errors import InputDataError


def check_output(path: Path | None, option: str, *, image: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    A long backtest, replay or detection run should not end in "cannot write" and
    lose what it computed: the folder is created now (as the write would) and a
    scratch file is written to it and removed; a directory, or a plot format
    matplotlib cannot write, is refused with the option named.

    Raises:
        InputDataError: Naming the option and what is wrong.
    """
    import tempfile

    if path is None:
        return
    if path.is_dir():
        raise InputDataError(f"{option} {path}: is a directory; give a file name")
    if image:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in formats:
            raise InputDataError(
                f"{option} {path}: cannot write a plot as {suffix or 'a file without a suffix'!r}"
                "; use a name ending in .png, .svg or .pdf"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".forecaster-check-"):
            pass
    except OSError as exc:
        raise InputDataError(f"{option} {path}: cannot write there ({exc})") from exc


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a scratch file beside ``path``, then rename it to ``path``.

    A failure part-way leaves any earlier ``path`` as it was, never a truncated file.
    """
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(Path(scratch))
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
