"""Writing the files the commands produce: checked before the work, replaced atomically."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forecaster.errors import InputDataError


def check_output(path: Path | None, option: str, *, image: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work is done.

    A long backtest, replay or detection run should not end in "cannot write" and
    lose what it computed: the folder is created now (as the write would) and a
    scratch file is written to the nearest existing folder and removed (folders still
    missing are created only by the write); a directory, or a plot format matplotlib
    cannot write, is refused with the option named.

    Raises:
        InputDataError: Naming the option and what is wrong.
    """
    import tempfile

    if path is None:
        return
    if path.is_dir():
        raise InputDataError(f"{option} {path}: is a directory; give a file name")
    if is_special_file(path):  # /dev/null, /dev/stdout, a named pipe: written in place
        import os

        if not os.access(path, os.W_OK):
            raise InputDataError(f"{option} {path}: cannot write there (permission denied)")
        return
    if image:
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in formats:
            raise InputDataError(
                f"{option} {path}: cannot write a plot as {suffix or 'a file without a suffix'!r}"
                "; use a name ending in .png, .svg or .pdf"
            )
    # the nearest folder that exists: folders still missing are created by the write,
    # so a run that fails before it leaves none behind
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InputDataError(f"{option} {path}: cannot write there ({folder} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".forecaster-check-"):
            pass
    except OSError as exc:
        raise InputDataError(f"{option} {path}: cannot write there ({exc})") from exc


def check_outputs(
    source: Path, outputs: dict[str, Path | None], *, images: tuple[str, ...] = ("--plot",)
) -> None:
    """:func:`check_distinct` and :func:`check_output` for every output of a command
    (the options in ``images`` are plots), before its work starts."""
    check_distinct(source, outputs)
    for option, path in outputs.items():
        check_output(path, option, image=option in images)


def check_distinct(source: Path, outputs: dict[str, Path | None]) -> None:
    """Refuse an output that is the input file or another output of the same run.

    Writing the backtest, the events or a report over the CSV it was read from (a
    slip of the tab key) replaces the user's data with the result; two outputs on
    one path leave only the last. Paths are compared after resolving symlinks, and
    existing files also by identity (hard links).

    Args:
        source: The input CSV.
        outputs: The output paths by option name (``None``: not asked for).

    Raises:
        InputDataError: Naming both options (or the option and the input).
    """
    seen: list[tuple[str, Path]] = [("the input", source)]
    for option, path in outputs.items():
        if path is None:
            continue
        for other, earlier in seen:
            if _same_file(path, earlier):
                what = f"is {other}" if other == "the input" else f"is also {other}"
                raise InputDataError(
                    f"{option} {path}: {what}; writing there would replace it, give "
                    "another file name"
                )
        seen.append((option, path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (after symlinks; hard links if both exist)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def is_special_file(path: Path) -> bool:
    """Whether ``path`` (after symlinks) exists and is neither a regular file nor a
    folder: a device such as ``/dev/null``, a pipe (``/dev/stdout | ...``), a socket."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def replace_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write`` on a scratch file beside ``path``, then rename it to ``path``.

    A failure part-way leaves any earlier ``path`` as it was, never a truncated file.
    The file gets the mode an ordinary write would give it: an existing file's own, or
    the default for new files under the process's umask (a scratch file is private,
    0600). A symlink is written through: its target is replaced, the link stays.
    A device or pipe (``-o /dev/null``, ``-o /dev/stdout``) is written into, not
    replaced: renaming over ``/dev/null`` (as root) put a regular file in its place.
    """
    import os
    import shutil
    import stat
    import tempfile

    if is_special_file(path):
        with tempfile.TemporaryDirectory(prefix="forecaster-") as folder:
            staged = Path(folder) / f"output{path.suffix}"
            write(staged)
            with staged.open("rb") as source, open(path, "wb") as target:
                shutil.copyfileobj(source, target)
        return
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(handle)
    try:
        write(Path(scratch))
        os.chmod(scratch, mode)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def write_report(path: Path, text: str, *, show: bool = True) -> None:
    """Write the text report ``text`` (a benchmark's markdown) to ``path``; print it if ``show``.

    The folder is created and the file replaced atomically: ``update_readme.py`` pastes
    these reports into the README, so a run that fails part-way must leave the last
    whole report, not half of a new one.
    """
    replace_atomically(path, lambda scratch: scratch.write_text(text))
    if show:
        print(text, end="" if text.endswith("\n") else "\n")  # noqa: T201
