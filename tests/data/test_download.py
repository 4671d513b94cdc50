"""``kdsleep download`` against a local HTTP server on 127.0.0.1 serving the real files in ../shared/data.

No test reaches the internet: every URL is the local server's, which is shut down after each test.
"""

from __future__ import annotations

import hashlib
import http.server
import re
import threading
from functools import partial
from pathlib import Path

import pytest

from kdsleep.data.download import (
    ChecksumError,
    DownloadError,
    download_dataset,
    download_file,
    parse_checksums,
)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=N-`` support and an optional cut-off to simulate drops."""

    cut_after: dict[str, int] = {}
    log: list[tuple[str, str | None]] = []

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        type(self).log.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404, "not found")
            return
        data = path.read_bytes()
        start, status = 0, 200
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after.get(self.path)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


@pytest.fixture()
def serve():
    servers = []

    def start(directory: Path) -> str:
        handler = type("Handler", (_Handler,), {"cut_after": {}, "log": []})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
        server.handler = handler
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_slpdb_download_verifies_and_skips_present_files(shared_data, serve, tmp_path):
    server = serve(shared_data / "slpdb")
    files = download_dataset(
        "slpdb",
        tmp_path,
        base_url=_url(server),
        include=["slp01a.st", "slp01a.ecg"],
        timeout=5,
        progress=False,
    )
    assert [f.name for f in files] == ["slp01a.ecg", "slp01a.st"]
    for f in files:
        assert _sha(f) == _sha(shared_data / "slpdb" / f.name)
    assert not list(tmp_path.glob("*.part"))
    n_requests = len(server.handler.log)
    download_dataset(
        "slpdb",
        tmp_path,
        base_url=_url(server),
        include=["slp01a.st", "slp01a.ecg"],
        timeout=5,
        progress=False,
    )
    assert len(server.handler.log) == n_requests + 1  # only SHA256SUMS.txt again


def test_interrupted_download_resumes_with_range(shared_data, serve, tmp_path):
    server = serve(shared_data / "slpdb")
    server.handler.cut_after["/slp03.ecg"] = 5000
    with pytest.raises(DownloadError, match="run again to resume"):
        download_dataset(
            "slpdb", tmp_path, base_url=_url(server), include=["slp03.ecg"], timeout=5, progress=False
        )
    assert not (tmp_path / "slp03.ecg").exists()
    assert (tmp_path / "slp03.ecg.part").stat().st_size == 5000
    server.handler.cut_after.clear()
    download_dataset(
        "slpdb", tmp_path, base_url=_url(server), include=["slp03.ecg"], timeout=5, progress=False
    )
    assert ("/slp03.ecg", "bytes=5000-") in server.handler.log
    assert _sha(tmp_path / "slp03.ecg") == _sha(shared_data / "slpdb" / "slp03.ecg")
    assert not (tmp_path / "slp03.ecg.part").exists()


def test_complete_part_file_is_finished_after_416(shared_data, serve, tmp_path):
    server = serve(shared_data / "slpdb")
    real = shared_data / "slpdb" / "slp04.st"
    (tmp_path / "slp04.st.part").write_bytes(real.read_bytes())
    download_file(_url(server) + "slp04.st", tmp_path / "slp04.st", _sha(real), timeout=5, progress=False)
    assert _sha(tmp_path / "slp04.st") == _sha(real)


def test_checksum_mismatch_leaves_nothing(shared_data, serve, tmp_path):
    # This copy's slp01a.hea differs from the checksum PhysioNet publishes (line endings): a real mismatch.
    server = serve(shared_data / "slpdb")
    with pytest.raises(ChecksumError, match=r"slp01a.hea: SHA-256 mismatch: expected 05bfae85"):
        download_dataset(
            "slpdb", tmp_path, base_url=_url(server), include=["slp01a.hea"], timeout=5, progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_cli_download_and_missing_file_error(shared_data, serve, tmp_path, capsys):
    from kdsleep.cli import main

    server = serve(shared_data / "slpdb")
    args = [
        "download",
        "slpdb",
        "--base-url",
        _url(server),
        "--dest",
        str(tmp_path),
        "--no-progress",
        "--timeout",
        "5",
    ]
    assert main(args + ["--include", "slp02a.st"]) == 0
    assert (tmp_path / "slp02a.st").is_file()
    assert "1 file(s) verified" in capsys.readouterr().out
    # slp01a.dat is listed in SHA256SUMS.txt but this copy has no signal files
    assert main(args + ["--include", "slp01a.dat"]) == 2
    err = capsys.readouterr().err.strip()
    assert "slp01a.dat: HTTP 404" in err and len(err.splitlines()) == 1


def test_hmc_download_then_read(shared_data, serve, tmp_path):
    served = tmp_path / "served"
    (served / "recordings").mkdir(parents=True)
    # a link, not a copy, so the served bytes are the real file's
    (served / "recordings" / "SN001_sleepscoring.edf").symlink_to(
        shared_data / "hmc" / "SN001_sleepscoring.edf"
    )
    digest = _sha(shared_data / "hmc" / "SN001_sleepscoring.edf")
    (served / "SHA256SUMS.txt").write_text(f"{digest} recordings/SN001_sleepscoring.edf\n")
    server = serve(served)
    dest = tmp_path / "hmc"
    download_dataset("hmc", dest, base_url=_url(server), timeout=5, progress=False)
    from kdsleep.data.datasets import get_adapter

    (entry,) = get_adapter("hmc").find(dest, require_signals=False)
    assert entry.read_hypnogram().n_epochs == 854


def test_parse_checksums_rejects_unsafe_paths_and_garbage():
    assert parse_checksums("a" * 64 + " *dir/x.edf\n") == {"dir/x.edf": "a" * 64}
    with pytest.raises(DownloadError, match="unsafe path"):
        parse_checksums("a" * 64 + " ../../etc/passwd\n")
    with pytest.raises(DownloadError, match="line 1 is not"):
        parse_checksums("<html>not found</html>\n")


def test_base_url_must_be_http(tmp_path):
    with pytest.raises(DownloadError, match="must start with http:// or https://"):
        download_dataset("slpdb", tmp_path, base_url="127.0.0.1:8000/slpdb", progress=False)
