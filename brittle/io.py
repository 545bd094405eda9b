"""Output contract: atomic writes, run metadata and completion markers.

Every step writes into one folder (``outputs/<comparison>/<step>/`` or ``outputs/<model>/<step>/``).
Files are written to a temporary name in the same folder, fsynced and moved into place with
``os.replace``, so a killed run never leaves a half-written file that looks like a result.
``run_meta.json`` records how the result was made; ``_DONE.json`` is written last and holds the
step's parameters: a later run skips the step only if that marker exists and its parameters match.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

DONE_MARKER = "_DONE.json"
RUN_META = "run_meta.json"
_TRACKED_PACKAGES = ("torch", "transformers", "numpy", "scipy", "pandas", "scikit-learn", "safetensors", "peft")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and move it into place.

    Use for writers that want a filename (``fig.savefig``, ``df.to_csv``, ``save_file``). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (numpy scalars and paths are converted)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, frame) -> Path:
    """Atomically write a pandas DataFrame as CSV without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def save_figure(path: str | os.PathLike, fig, dpi: int = 120) -> Path:
    """Atomically save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _normalise(obj: Any) -> Any:
    """Round-trip through JSON so that parameters compare equal to what a marker stored."""
    return json.loads(json.dumps(obj, default=_json_default))


def model_slug(model: str | os.PathLike) -> str:
    """Short filesystem-safe name of a model: a local folder's basename, or a Hub id with '/' -> '_'.

    >>> model_slug("EleutherAI/deep-ignorance-unfiltered")
    'EleutherAI_deep-ignorance-unfiltered'
    """
    text = str(model).rstrip("/")
    if Path(text).exists():
        return Path(text).resolve().name
    return text.replace("/", "_")


def comparison_dir(root: str | os.PathLike, model_a: str, model_b: str) -> Path:
    """``<root>/<slug_a>__vs__<slug_b>``: the folder of one model-pair comparison."""
    return Path(root) / f"{model_slug(model_a)}__vs__{model_slug(model_b)}"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


class StepRun:
    """One step's output folder, its skip decision and its metadata.

    Typical use in a script::

        run = StepRun(outdir, params=vars(args), argv=argv)
        if run.should_skip(force=args.force):
            return 0
        ...                                   # compute; write files with write_csv(run.path(...))
        run.finish(models={...}, device=..., dtype=...)

    ``params`` must hold everything that changes the result (not ``--force``, not output paths);
    the marker stores them and a later run with different params recomputes.
    """

    def __init__(self, outdir: str | os.PathLike, params: dict[str, Any], argv: list[str] | None = None):
        self.outdir = Path(outdir)
        self.params = _normalise({k: v for k, v in params.items() if k not in {"force", "outdir"}})
        self.argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
        self.started = time.time()
        self.timings: dict[str, float] = {}

    def path(self, name: str) -> Path:
        return self.outdir / name

    def is_done(self) -> bool:
        marker = self.outdir / DONE_MARKER
        if not marker.exists():
            return False
        try:
            return read_json(marker).get("params") == self.params
        except (json.JSONDecodeError, OSError):
            return False

    def should_skip(self, force: bool = False, quiet: bool = False) -> bool:
        """True when a finished result with the same parameters exists and ``force`` is off.

        Otherwise removes any stale marker (so a crash mid-run cannot leave an old marker beside
        new, partial files) and creates the folder.
        """
        if not force and self.is_done():
            if not quiet:
                print(f"[skip] {self.outdir} is complete with the same parameters (use --force to redo)")
            return True
        self.outdir.mkdir(parents=True, exist_ok=True)
        (self.outdir / DONE_MARKER).unlink(missing_ok=True)
        return False

    @contextmanager
    def timed(self, label: str) -> Iterator[None]:
        t0 = time.time()
        try:
            yield
        finally:
            self.timings[label] = self.timings.get(label, 0.0) + time.time() - t0

    def finish(self, **meta: Any) -> None:
        """Write ``run_meta.json`` and then the completion marker (always last)."""
        elapsed = time.time() - self.started
        write_json(self.outdir / RUN_META, {
            "argv": self.argv,
            "params": self.params,
            "git_commit": git_commit(),
            "versions": library_versions(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(elapsed, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            **meta,
        })
        write_json(self.outdir / DONE_MARKER, {"params": self.params, "seconds": round(elapsed, 3)})


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file: part of a step's params when the step reads another step's output, so
    the step recomputes after its input changed."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(model: str | os.PathLike) -> str | None:
    """SHA-256 of the names, sizes and modification times of a local folder's ``*.safetensors``.

    Cheap even for a 6.9B checkpoint (nothing is read), and it changes when a model is retrained
    under the same path, so a step's params can include it. None for a Hub id, whose revision
    identifies it instead.
    """
    import hashlib

    folder = Path(model)
    if not folder.is_dir():
        return None
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.glob("*.safetensors"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def require_step(outdir: str | os.PathLike, files: list[str], how: str) -> Path:
    """The folder of a finished earlier step, or a :class:`~brittle.cli.UserError` saying how to make it.

    ``files``: names that must exist in it; ``how``: the command that produces it.
    """
    from brittle.cli import UserError

    outdir = Path(outdir)
    if not (outdir / DONE_MARKER).exists():
        raise UserError(f"{outdir} has no finished result; run first: {how}")
    missing = [f for f in files if not (outdir / f).exists()]
    if missing:
        raise UserError(f"{outdir} lacks {', '.join(missing)}; rerun: {how} --force")
    return outdir
