"""Downloads of the open PSG databases on PhysioNet (HMC, slpdb, Sleep-EDF).

Each database publishes a ``SHA256SUMS.txt`` beside its files; it is fetched first and every file is
checked against it. Downloads go to ``<name>.part`` beside the target and resume from there with an HTTP
``Range`` request after an interruption; only a file whose checksum matches is moved to its final name
(``os.replace``), so the target folder never holds a half-written or corrupt file under a real name.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import logging
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from kdsleep._io import sha256_file

__all__ = [
    "OPEN_DATASETS",
    "ChecksumError",
    "DownloadError",
    "RemoteDataset",
    "download_dataset",
    "download_file",
    "fetch_checksums",
    "parse_checksums",
]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched (HTTP error, network error, bad checksum list)."""


class ChecksumError(DownloadError):
    """A downloaded file does not have the published SHA-256 checksum."""


@dataclass(frozen=True)
class RemoteDataset:
    """An open database and where to get it.

    Parameters
    ----------
    name : str
        Short name used by ``kdsleep download``.
    base_url : str
        Folder URL holding the files and ``SHA256SUMS.txt``.
    include : tuple of str
        Default ``fnmatch`` patterns of the files to fetch (relative paths).
    description : str
        One line for ``--help``.
    """

    name: str
    base_url: str
    include: tuple[str, ...]
    description: str
    checksums: str = "SHA256SUMS.txt"


OPEN_DATASETS: dict[str, RemoteDataset] = {
    "hmc": RemoteDataset(
        "hmc",
        "https://physionet.org/files/hmc-sleep-staging/1.1/",
        ("*.edf", "*.txt"),
        "Haaglanden Medisch Centrum sleep staging database (154 PSGs, AASM scoring), ODC-By 1.0",
    ),
    "slpdb": RemoteDataset(
        "slpdb",
        "https://physionet.org/files/slpdb/1.0.0/",
        ("RECORDS", "*.hea", "*.dat", "*.st", "*.ecg"),
        "MIT-BIH Polysomnographic Database (18 records, ECG + EEG, R&K scoring, beat annotations), ODC-By 1.0",
    ),
    "sleep-edf": RemoteDataset(
        "sleep-edf",
        "https://physionet.org/files/sleep-edfx/1.0.0/",
        ("*-PSG.edf", "*-Hypnogram.edf"),
        "Sleep-EDF Expanded (197 PSGs, EEG Fpz-Cz/Pz-Oz, R&K scoring), ODC-By 1.0",
    ),
}


def _safe_relative(path: str, source: str) -> str:
    normal = posixpath.normpath(path.lstrip("*").strip())
    if normal.startswith(("/", "../")) or normal in ("..", ".", "") or "\\" in normal:
        raise DownloadError(f"{source}: refusing unsafe path {path!r}")
    return normal


def parse_checksums(text: str, source: str = "SHA256SUMS.txt") -> dict[str, str]:
    """Parse ``sha256sum`` output (``<64 hex> [*]<path>`` per line) into ``{path: sha256}``."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.strip().split(None, 1)
        digest = parts[0].lower()
        if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DownloadError(f"{source}: line {number} is not '<sha256> <path>': {line!r}")
        out[_safe_relative(parts[1], source)] = digest
    if not out:
        raise DownloadError(f"{source}: no checksums found")
    return out


def _join(base_url: str, relative: str) -> str:
    return urllib.parse.urljoin(
        base_url if base_url.endswith("/") else base_url + "/", urllib.parse.quote(relative)
    )


def _open(url: str, timeout: float, start: int = 0):  # type: ignore[no-untyped-def]
    request = urllib.request.Request(url, headers={"User-Agent": "kdsleep-download"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs only, checked by caller
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return err  # requested range past the end: the partial file may already be complete
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: {reason}") from None


def fetch_checksums(base_url: str, name: str = "SHA256SUMS.txt", timeout: float = 30.0) -> dict[str, str]:
    """Download and parse a database's checksum list."""
    url = _join(base_url, name)
    with _open(url, timeout) as response:
        text = response.read().decode("utf-8", errors="replace")
    return parse_checksums(text, url)


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming a previous ``dest.part`` and checking the SHA-256.

    Parameters
    ----------
    url : str
        http(s) URL.
    dest : path-like
        Final file; its folder is created.
    sha256 : str, optional
        Expected checksum; a mismatch deletes the partial file and raises :class:`ChecksumError`.
    timeout : float
        Seconds to wait for the server on each request / read.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    Path
        ``dest``. An existing ``dest`` with the right checksum is kept without a request.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http and https URLs are supported")
    dest = Path(dest)
    if dest.exists() and sha256 is not None and sha256_file(dest) == sha256:
        logger.debug("%s: already present with the right checksum", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    digest = hashlib.sha256()
    response = _open(url, timeout, start)
    with response:
        status = getattr(response, "status", None) or response.getcode()
        if status == 416:
            logger.debug("%s: server has nothing past byte %d; checking the partial file", url, start)
            mode = "ab"
        elif start and status == 206:
            logger.info("%s: resuming at byte %d", dest.name, start)
            mode = "ab"
        else:
            if start:
                logger.info("%s: server ignored the range request; starting over", dest.name)
            start, mode = 0, "wb"
        if mode == "ab":
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        length = response.headers.get("Content-Length") if status != 416 else "0"
        total = start + int(length) if length and length.isdigit() else None
        with (
            open(part, mode) as fh,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            if status != 416:
                try:
                    for block in iter(lambda: response.read(_CHUNK), b""):
                        fh.write(block)
                        digest.update(block)
                        bar.update(len(block))
                except (TimeoutError, OSError, http.client.HTTPException) as err:
                    raise DownloadError(
                        f"{url}: interrupted after {fh.tell()} bytes ({err}); run again to resume"
                    ) from None
            fh.flush()
            os.fsync(fh.fileno())
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{url}: received {size} of {total} bytes; run again to resume")
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256:
        part.unlink()
        raise ChecksumError(
            f"{dest}: SHA-256 mismatch: expected {sha256}, got {actual} ({size} bytes); partial file removed"
        )
    os.replace(part, dest)
    return dest


def download_dataset(
    name: str,
    dest: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    include: Sequence[str] | None = None,
    timeout: float = 30.0,
    progress: bool = True,
) -> list[Path]:
    """Download the files of an open database that match ``include``, verified against its checksums.

    Parameters
    ----------
    name : str
        ``"hmc"``, ``"slpdb"`` or ``"sleep-edf"``.
    dest : path-like
        Target folder (the database's relative paths are kept below it).
    base_url : str, optional
        Overrides the PhysioNet folder URL (a mirror, or a local server in tests).
    include : sequence of str, optional
        ``fnmatch`` patterns of relative paths (matched against the path and its file name); default the
        dataset's signal and scoring files.
    timeout : float
        Seconds per request.
    progress : bool
        Show progress bars.

    Returns
    -------
    list of Path
        The files now present and verified.
    """
    if name not in OPEN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; downloadable: {sorted(OPEN_DATASETS)}")
    remote = OPEN_DATASETS[name]
    base = base_url or remote.base_url
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise DownloadError(f"base URL {base!r} must start with http:// or https://")
    checksums = fetch_checksums(base, remote.checksums, timeout)
    patterns = tuple(include) if include else remote.include
    wanted = sorted(
        path
        for path in checksums
        if any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(posixpath.basename(path), p) for p in patterns)
    )
    if not wanted:
        raise DownloadError(f"{_join(base, remote.checksums)}: no listed file matches {list(patterns)}")
    dest = Path(dest)
    done = []
    for relative in tqdm(wanted, desc=f"{name}", unit="file", disable=not progress):
        done.append(
            download_file(
                _join(base, relative),
                dest / relative,
                checksums[relative],
                timeout=timeout,
                progress=progress,
            )
        )
    logger.info("%s: %d file(s) in %s", name, len(done), dest)
    return done
