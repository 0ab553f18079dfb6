"""Finding, verifying and downloading dataset files.

Where files are looked for, in order:

1. the folder the caller names (``data_dir=`` / ``--data-dir``), else ``$GENROBUST_DATA_DIR``;
2. genrobust's per-user cache (``platformdirs.user_cache_dir("genrobust")/datasets``);
3. folders a Linux distribution installs (Debian's ``dataset-fashion-mnist`` package).

Each folder may use torchvision's raw layout (``<root>/MNIST/raw/train-images-idx3-ubyte.gz``) or hold the
files directly (``<root>/train-images-idx3-ubyte.gz``). Compressed and uncompressed files are both accepted.

A file is *verified* when its bytes match the published MD5, or its decompressed bytes match the known
SHA-256 of the content, or (EMNIST) it matches the manifest genrobust wrote when extracting it from an
archive whose published MD5 matched. A file that has a published checksum and fails it is *corrupt*.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ChecksumError, DownloadError, IdxFormatError
from .idx import peek_shape, read_bytes
from .registry import DatasetSpec, RawFile, get_spec

ENV_DATA_DIR = "GENROBUST_DATA_DIR"
ENV_CACHE_DIR = "GENROBUST_CACHE_DIR"
ENV_OFFLINE = "GENROBUST_OFFLINE"
MANIFEST = "genrobust-manifest.json"

VERIFIED, UNVERIFIED, CORRUPT, MISSING = "verified", "unverified", "corrupt", "missing"


def cache_dir() -> Path:
    """genrobust's per-user cache folder (``$GENROBUST_CACHE_DIR`` overrides it)."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("genrobust"))


def default_data_dir() -> Path:
    """Where datasets are downloaded to: ``$GENROBUST_DATA_DIR`` if set, else the cache."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else cache_dir() / "datasets"


def search_roots(spec: DatasetSpec, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for a dataset's files, in order of preference."""
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir).expanduser())
    elif os.environ.get(ENV_DATA_DIR):
        roots.append(Path(os.environ[ENV_DATA_DIR]).expanduser())
    roots.append(cache_dir() / "datasets")
    roots.extend(Path(d) for d in spec.system_dirs)
    unique: list[Path] = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def _candidates(root: Path, spec: DatasetSpec, raw: RawFile) -> Iterator[Path]:
    for folder in (root / spec.folder / "raw", root):
        yield folder / f"{raw.name}.gz"
        yield folder / raw.name


def find_file(spec: DatasetSpec, raw: RawFile, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first existing copy of ``raw`` in the search roots, or None."""
    for root in search_roots(spec, data_dir):
        for path in _candidates(root, spec, raw):
            if path.is_file():
                return path
    return None


@dataclass(frozen=True)
class FileCheck:
    """The outcome of checking one file: state is verified / unverified / corrupt / missing."""

    name: str
    state: str
    path: str | None
    detail: str
    count: int | None = None  # number of items the IDX header declares
    problem: str = ""  # for corrupt files: "checksum" or "format"

    def to_dict(self) -> dict:
        return asdict(self)


def _digest(data: bytes, algo: str) -> str:
    return hashlib.new(algo, data).hexdigest()


@functools.lru_cache(maxsize=64)
def _check_cached(path_str: str, mtime_ns: int, size: int, raw: RawFile, archive_md5: str | None) -> FileCheck:
    path = Path(path_str)
    try:
        count = peek_shape(path)[0]
    except IdxFormatError as exc:
        return FileCheck(raw.name, CORRUPT, path_str, str(exc), problem="format")
    if raw.md5 is None and raw.content_sha256 is None:
        return _check_against_manifest(path, raw, count, archive_md5)
    file_bytes = path.read_bytes()
    if raw.md5 is not None and _digest(file_bytes, "md5") == raw.md5:
        return FileCheck(raw.name, VERIFIED, path_str, "published MD5 matches", count)
    try:
        content = read_bytes(path)
    except IdxFormatError as exc:
        return FileCheck(raw.name, CORRUPT, path_str, str(exc), count, problem="format")
    actual = _digest(content, "sha256")
    if raw.content_sha256 is not None and actual == raw.content_sha256:
        return FileCheck(raw.name, VERIFIED, path_str, "SHA-256 of the decompressed content matches", count)
    expected = raw.content_sha256 or raw.md5
    return FileCheck(
        raw.name,
        CORRUPT,
        path_str,
        f"checksum mismatch: content SHA-256 is {actual}, expected {expected} "
        "(a damaged or different file; delete it and fetch again)",
        count,
        problem="checksum",
    )


def _check_against_manifest(path: Path, raw: RawFile, count: int, archive_md5: str | None) -> FileCheck:
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return FileCheck(
            raw.name,
            UNVERIFIED,
            str(path),
            "no published checksum for this file and no genrobust manifest beside it "
            "(structure checked only; `genrobust data fetch` verifies the published archive)",
            count,
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        entry = manifest["files"][path.name]
        recorded_archive = manifest["archive_md5"]
    except (OSError, ValueError, KeyError, TypeError):
        return FileCheck(raw.name, UNVERIFIED, str(path), f"{manifest_path} does not list {path.name}", count)
    if archive_md5 is not None and recorded_archive != archive_md5:
        return FileCheck(raw.name, UNVERIFIED, str(path), f"manifest records archive MD5 {recorded_archive}", count)
    actual = _digest(path.read_bytes(), "sha256")
    if actual != entry:
        return FileCheck(
            raw.name,
            CORRUPT,
            str(path),
            f"checksum mismatch against {manifest_path.name}: SHA-256 is {actual}, expected {entry}",
            count,
            problem="checksum",
        )
    return FileCheck(
        raw.name,
        VERIFIED,
        str(path),
        f"extracted from the archive with published MD5 {recorded_archive}",
        count,
    )


def check_file(spec: DatasetSpec, raw: RawFile, data_dir: str | os.PathLike[str] | None = None) -> FileCheck:
    """Find ``raw`` and check it against its checksums (results are cached per path, mtime and size)."""
    path = find_file(spec, raw, data_dir)
    if path is None:
        return FileCheck(raw.name, MISSING, None, "not found in " + ", ".join(map(str, search_roots(spec, data_dir))))
    st = path.stat()
    archive_md5 = spec.archive.md5 if spec.archive else None
    return _check_cached(str(path), st.st_mtime_ns, st.st_size, raw, archive_md5)


def usable_path(check: FileCheck) -> Path:
    """Return the path of a usable (verified or unverified) file, or raise the error that explains why not."""
    if check.state == MISSING:
        raise IdxFormatError(f"{check.name}: {check.detail}")
    if check.state == CORRUPT:
        if check.problem == "checksum":
            raise ChecksumError(f"{check.path}: {check.detail}")
        raise IdxFormatError(check.detail)
    assert check.path is not None
    return Path(check.path)


# --------------------------------------------------------------------------------------------- download


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def _retrieve(urls: tuple[str, ...], fname: str, md5: str, dest: Path, progress: bool) -> Path:
    """Download ``fname`` from the first mirror that serves it with the right MD5."""
    if _offline():
        raise DownloadError(f"cannot download {fname}: downloads are disabled ({ENV_OFFLINE} is set)")
    import pooch
    import requests

    errors: list[str] = []
    for base in urls:
        url = base.rstrip("/") + "/" + fname
        try:
            path = pooch.retrieve(url, known_hash=f"md5:{md5}", fname=fname, path=dest, progressbar=progress)
            return Path(path)
        except requests.exceptions.RequestException as exc:
            errors.append(f"{url}: {type(exc).__name__}: {_short(exc)}")
        except ValueError as exc:  # pooch's checksum mismatch
            errors.append(f"{url}: {_short(exc)}")
        except OSError as exc:
            errors.append(f"{url}: {exc}")
    raise DownloadError(
        f"could not download {fname} from any mirror (offline? behind a proxy?):\n  "
        + "\n  ".join(errors)
        + f"\nIf you already have the files, point genrobust at them with --data-dir or ${ENV_DATA_DIR}."
    )


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fetch(name: str, *, data_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> dict[str, FileCheck]:
    """Make sure every file of a dataset is present and verified, downloading what is missing or corrupt.

    Downloads go to ``data_dir`` if given, else ``$GENROBUST_DATA_DIR``, else the cache. Returns the check of
    every file after the download.
    """
    spec = get_spec(name)
    dest_root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    raw_dir = dest_root / spec.folder / "raw"
    checks = {f.name: check_file(spec, f, data_dir) for f in spec.files()}
    todo = [f for f in spec.files() if checks[f.name].state != VERIFIED]
    if not todo:
        return checks
    raw_dir.mkdir(parents=True, exist_ok=True)
    if spec.archive is not None:
        _fetch_from_archive(spec, raw_dir, progress)
    else:
        for f in todo:
            assert f.md5 is not None
            stale = raw_dir / f"{f.name}.gz"
            if stale.exists():
                stale.unlink()  # a corrupt copy would shadow the new download
            _retrieve(spec.mirrors, f"{f.name}.gz", f.md5, raw_dir, progress)
    checks = {f.name: check_file(spec, f, dest_root) for f in spec.files()}
    bad = [c for c in checks.values() if c.state != VERIFIED]
    if bad:
        raise DownloadError("after download, not verified: " + "; ".join(f"{c.name}: {c.detail}" for c in bad))
    return checks


def _fetch_from_archive(spec: DatasetSpec, raw_dir: Path, progress: bool) -> None:
    """Download the published archive (MD5-checked), extract this dataset's members, write a manifest."""
    archive = spec.archive
    assert archive is not None
    zip_path = raw_dir / archive.filename
    if not (zip_path.is_file() and _digest_file(zip_path, "md5") == archive.md5):
        if zip_path.exists():
            zip_path.unlink()
        if progress:
            print(f"downloading {archive.filename} ({archive.approx_size}) for {spec.name}")
        _retrieve(spec.mirrors, archive.filename, archive.md5, raw_dir, progress)
    manifest_path = raw_dir / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    except ValueError:
        manifest = {}
    if manifest.get("archive_md5") != archive.md5:
        manifest = {"archive_md5": archive.md5, "archive": archive.filename, "files": {}}
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for f in spec.files():
                member = f"{archive.member_prefix}{f.name}.gz"
                try:
                    data = zf.read(member)
                except KeyError:
                    raise DownloadError(f"{zip_path}: archive has no member {member}") from None
                out = raw_dir / f"{f.name}.gz"
                tmp = out.with_suffix(".gz.part")
                tmp.write_bytes(data)
                tmp.replace(out)
                manifest["files"][out.name] = _digest(data, "sha256")
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{zip_path}: not a valid zip archive ({exc})") from None
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _digest_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class SplitStatus:
    """What ``genrobust data info`` shows for one split of one dataset."""

    dataset: str
    split: str
    state: str  # verified / unverified / corrupt / missing / incomplete
    images: int | None
    expected: int
    location: str | None
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[SplitStatus]:
    """Check every file of a dataset without loading it: presence, location, checksum, declared counts."""
    spec = get_spec(name)
    rows = []
    for split, (img, lab) in spec.splits.items():
        ci, cl = check_file(spec, img, data_dir), check_file(spec, lab, data_dir)
        states = {ci.state, cl.state}
        if states == {MISSING}:
            state = MISSING
        elif MISSING in states:
            state = "incomplete"
        elif CORRUPT in states:
            state = CORRUPT
        elif UNVERIFIED in states:
            state = UNVERIFIED
        else:
            state = VERIFIED
        details = [f"{c.name}: {c.detail}" for c in (ci, cl) if c.state != VERIFIED]
        if state == VERIFIED and ci.count != cl.count:
            state = CORRUPT
            details.append(f"{ci.count} images but {cl.count} labels")
        found = ci.path or cl.path
        location = str(Path(found).resolve().parent) if found else None
        rows.append(SplitStatus(spec.name, split, state, ci.count, spec.counts[split], location, "; ".join(details)))
    return rows
