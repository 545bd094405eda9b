"""Output contract: atomic files, all-or-nothing step folders, run metadata and skip markers.

* Every file is written to a temporary name in its folder, fsynced and moved into place
  (``os.replace``), with the permissions the user's umask gives (0644 usually).
* A step writes into a *staging* folder beside its final folder and moves it into place only when
  it finishes (:class:`StepRun`), so a failed, interrupted or killed run leaves neither a
  half-written folder nor an empty one, and a previous complete result stays intact until the new
  one replaces it.
* ``run_meta.json`` records how a result was made; ``_DONE.json``, written last, holds the step's
  parameters *and the fingerprints of its inputs* (model weights, data files): a later run skips
  the step only if both match, so a model retrained into the same folder is recomputed.
* Temporary names carry the writer's process id; temporaries of processes that no longer run
  (a run killed with SIGKILL) are swept away by the next writer in that folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

from brittle.errors import UserError

DONE_MARKER = "_DONE.json"
RUN_META = "run_meta.json"
_TRACKED_PACKAGES = ("torch", "transformers", "numpy", "scipy", "pandas", "scikit-learn", "safetensors", "peft")

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK

# ".<name>.<pid>-<random>.tmp<suffix>" for files, ".<name>.<pid>-<random>.staging" for folders
_TEMP_PATTERN = re.compile(r"^\..+\.(\d+)-[0-9a-f]+\.(tmp.*|staging|replaced)$")


def temp_path(final: Path, kind: str) -> Path:
    """A temporary name beside ``final`` that carries this process's id, so that
    :func:`sweep_stale_temporaries` can tell a dead writer's leftovers from a live one's work."""
    return final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and staging folders in ``folder`` whose writer process is gone
    (what a run killed with SIGKILL leaves behind). Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMP_PATTERN.match(entry.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


# --------------------------------------------------------------------------------------- files
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and move it into place.

    For writers that want a filename (``fig.savefig``, ``df.to_csv``, ``torch.save``). On an
    exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    make_folder(path.parent)
    tmp = temp_path(path, "tmp" + path.suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_folder(path: str | os.PathLike) -> Path:
    """``mkdir -p`` that reports an unwritable location as a :class:`UserError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create folder {path}: {exc.strerror or exc}; choose another output location") from None
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON. NaN and ±Inf become ``null`` (they are not JSON);
    numpy/torch scalars, arrays and paths are converted."""
    text = json.dumps(_finite_json(obj), indent=2, allow_nan=False, default=_json_default)
    return write_text(path, text + "\n")


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


def nonblank_lines(text: str) -> list[str]:
    """The stripped, non-blank lines of ``text``: the project's one way to read "one text per line"."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_lines(path: str | os.PathLike, limit: int | None = None, what: str = "text file") -> list[str]:
    """The non-blank lines of a UTF-8 file, stripped, the first ``limit`` of them (all if None).

    A missing file or one without text is a :class:`UserError` naming ``what`` it should be."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    lines = nonblank_lines(path.read_text(encoding="utf-8"))
    if not lines:
        raise UserError(f"{what} {path} holds no text (one text per line expected)")
    return lines[:limit] if limit else lines


def groups_path(text_path: str | os.PathLike) -> Path:
    """Where the groups of a text file live: ``forget.txt`` -> ``forget.groups.txt``."""
    path = Path(text_path)
    return path.with_name(f"{path.stem}.groups.txt")


def read_groups(text_path: str | os.PathLike, limit: int | None = None) -> list[str] | None:
    """The group label (the tiny world's entity) of each line of a text file, from the optional
    sibling :func:`groups_path`; None when there is none. A groups file whose line count differs
    from the text file's is a :class:`UserError` (the labels would be misaligned)."""
    path = groups_path(text_path)
    if not path.is_file():
        return None
    labels = nonblank_lines(path.read_text(encoding="utf-8"))
    n_texts = len(nonblank_lines(Path(text_path).read_text(encoding="utf-8")))
    if len(labels) != n_texts:
        raise UserError(f"{path} has {len(labels)} lines for {n_texts} texts in {text_path}: one group per text expected")
    return labels[:limit] if limit else labels


def read_jsonl(path: str | os.PathLike, what: str = "JSON Lines file") -> list[dict]:
    """One JSON object per non-blank line; a malformed line is a :class:`UserError` with its number."""
    rows = []
    for number, line in enumerate(read_lines(path, what=what), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    return rows


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_digest(obj: Any, length: int = 16) -> str:
    """Short SHA-256 of ``obj``'s canonical JSON (sorted keys): a key for caches and markers."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def weights_fingerprint(model: str | os.PathLike) -> str | None:
    """SHA-256 of the names, sizes and modification times of a local folder's ``*.safetensors``.

    Cheap even for a 6.9B checkpoint (nothing is read), and it changes when a model is retrained
    under the same path. None for a Hub id, whose revision identifies it instead.
    """
    folder = Path(model)
    if not folder.is_dir():
        return None
    parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(folder.glob("*.safetensors"))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _finite_json(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_finite_json(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):   # numpy / torch values
        return _finite_json(obj.tolist())
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _normalise(obj: Any) -> Any:
    """Round-trip through JSON so that parameters compare equal to what a marker stored."""
    return json.loads(json.dumps(_finite_json(obj), default=_json_default))


def model_slug(model: str | os.PathLike) -> str:
    """Short filesystem-safe name of a model: a local folder's basename, or a Hub id with '/' -> '_'.

    >>> model_slug("EleutherAI/deep-ignorance-unfiltered")
    'EleutherAI_deep-ignorance-unfiltered'
    """
    text = str(model).rstrip("/")
    if Path(text).exists():
        return Path(text).resolve().name
    return text.replace("/", "_")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
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


# --------------------------------------------------------------------------------------- steps
_UNFINISHED: set["StepRun"] = set()


def discard_unfinished() -> None:
    """Remove the staging folders of every step begun in this process and not finished (called
    by ``brittle.cli.run_main`` however a script ends)."""
    for run in list(_UNFINISHED):
        run.abandon()


class StepRun:
    """One step's output folder, its skip decision and its metadata.

    Typical use in a script::

        run = StepRun(outdir, params, argv, models={"a": args.model_a}, files={"texts": path})
        if run.should_skip(args.force):
            return 0
        ...                        # compute; write files with write_csv(run.path("x.csv"))
        run.finish(device=...)     # run_meta.json, _DONE.json, then the folder moves into place

    ``params`` must hold everything that changes the result except the inputs' contents (not
    ``--force``, not output locations). ``models`` and ``files`` name the inputs whose contents
    matter: their fingerprints (weights: names, sizes and modification times of the safetensors
    files; files: SHA-256) join the parameters in the marker. Until :meth:`finish`, files go to
    a staging folder beside ``outdir`` (:attr:`dir`).
    """

    def __init__(self, outdir: str | os.PathLike, params: dict[str, Any], argv: Iterable[str] | None = None,
                 models: dict[str, str | None] | None = None, files: dict[str, Any] | None = None):
        self.outdir = Path(outdir)
        params = {k: v for k, v in params.items() if k not in {"force", "outdir", "output_root"}}
        params["inputs"] = {
            **{f"weights_{role}": weights_fingerprint(m) for role, m in (models or {}).items() if m},
            **{f"file_{role}": (file_digest(f) if f and Path(f).is_file() else None)
               for role, f in (files or {}).items()},
        }
        self.params = _normalise(params)
        self.argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
        self.started = time.time()
        self.timings: dict[str, float] = {}
        self._staging: Path | None = None

    @property
    def dir(self) -> Path:
        """Where the step writes now: the staging folder (begun by :meth:`should_skip`)."""
        if self._staging is None:
            self.begin()
        return self._staging

    def path(self, name: str) -> Path:
        """``name`` inside the folder being written."""
        return self.dir / name

    def is_done(self) -> bool:
        marker = self.outdir / DONE_MARKER
        if not marker.exists():
            return False
        try:
            return read_json(marker).get("params") == self.params
        except (json.JSONDecodeError, OSError):
            return False

    def should_skip(self, force: bool = False, quiet: bool = False) -> bool:
        """True when a finished result with the same parameters and inputs exists and ``force``
        is off. Otherwise begins the run (creates the staging folder, so an unwritable output
        location fails here, before any work)."""
        if not force and self.is_done():
            if not quiet:
                print(f"[skip] {self.outdir} is complete with the same inputs and parameters (--force redoes it)")
            return True
        self.begin()
        return False

    def begin(self) -> None:
        if self._staging is not None:
            return
        parent = make_folder(self.outdir.parent)
        if self.outdir.is_dir() and any(self.outdir.iterdir()) and not (
                (self.outdir / DONE_MARKER).exists() or (self.outdir / RUN_META).exists()):
            raise UserError(f"{self.outdir} holds files that are not a result of this tool (no {DONE_MARKER}); "
                            "move them away or choose another output folder")
        if self.outdir.exists() and not self.outdir.is_dir():
            raise UserError(f"{self.outdir} is a file, not a folder; choose another output folder")
        sweep_stale_temporaries(parent)
        staging = temp_path(self.outdir, "staging")
        try:
            staging.mkdir()
            os.chmod(staging, DIR_MODE)
        except OSError as exc:
            raise UserError(f"cannot write into {parent}: {exc.strerror or exc}; choose another output folder") from None
        self._staging = staging
        _UNFINISHED.add(self)

    @contextmanager
    def timed(self, label: str) -> Iterator[None]:
        t0 = time.time()
        try:
            yield
        finally:
            self.timings[label] = self.timings.get(label, 0.0) + time.time() - t0

    def finish(self, **meta: Any) -> None:
        """Write ``run_meta.json`` and the completion marker, then move the folder into place
        (replacing an earlier result)."""
        elapsed = time.time() - self.started
        write_json(self.path(RUN_META), {
            "argv": self.argv,
            "params": self.params,
            "git_commit": git_commit(),
            "versions": library_versions(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(elapsed, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            **meta,
        })
        write_json(self.path(DONE_MARKER), {"params": self.params, "seconds": round(elapsed, 3)})
        replaced = None
        if self.outdir.exists():
            replaced = temp_path(self.outdir, "replaced")
            os.replace(self.outdir, replaced)
        os.replace(self._staging, self.outdir)
        if replaced is not None:
            shutil.rmtree(replaced, ignore_errors=True)
        self._staging = None
        _UNFINISHED.discard(self)

    def abandon(self) -> None:
        """Remove the staging folder of an unfinished run (the previous result stays)."""
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        _UNFINISHED.discard(self)


def require_step(outdir: str | os.PathLike, files: list[str], how: str) -> Path:
    """The folder of a finished earlier step, or a :class:`UserError` saying how to make it.

    ``files``: names that must exist in it; ``how``: the command that produces it.
    """
    outdir = Path(outdir)
    if not (outdir / DONE_MARKER).exists():
        raise UserError(f"{outdir} has no finished result; run first: {how}")
    missing = [f for f in files if not (outdir / f).exists()]
    if missing:
        raise UserError(f"{outdir} lacks {', '.join(missing)}; rerun: {how} --force")
    return outdir
