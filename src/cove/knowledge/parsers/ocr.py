"""Reading the text of a page image with Tesseract (Debian's `tesseract-ocr`), run as a program
with a time cap per page; cove only asks for it with `--ocr`."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import DocumentRefused
from . import limits
from .limits import Deadline

#: What a person must do when OCR was asked for and Tesseract is not there.
MISSING = "OCR needs Tesseract, which is not installed (Debian/Ubuntu: sudo apt install tesseract-ocr)"


def tesseract() -> str | None:
    """The tesseract program's path, or None when it is not installed."""
    return shutil.which(os.environ.get("COVE_TESSERACT", "tesseract"))


def read_image(png: bytes, deadline: Deadline) -> str:
    """The text Tesseract reads in one PNG image; DocumentRefused when it cannot run or fails."""
    program = tesseract()
    if program is None:
        raise DocumentRefused(MISSING)
    seconds = max(1.0, min(limits.OCR_SECONDS_PER_PAGE, deadline.left()))
    # one OpenMP thread: the machine's other cores are the engine's, and spinning threads of two
    # programs on the same cores are slower than one thread each
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [program, "stdin", "stdout"],
            input=png,
            capture_output=True,
            timeout=seconds,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DocumentRefused(f"OCR of a page took longer than {seconds:.0f} s") from None
    except OSError as e:
        raise DocumentRefused(f"Tesseract could not be run: {e.strerror or e}") from None
    if done.returncode != 0:
        last = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"])[-1]
        raise DocumentRefused(f"Tesseract failed on a page: {last[:200]}")
    return done.stdout.decode("utf-8", "replace")
