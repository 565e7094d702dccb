"""A camera uploads bursts of 24-megapixel frames over FTPS into a node; how soon is each at the peer?

Prints one JSON object (issue 16, "Must show" 3).  Real processes on loopback: a camera
node (`cammesh node --ftp`) paired over TLS with a desk node, and, in the same run, a bare
pyftpdlib server (its stock handlers, no cammesh code) in a process of its own.  The same
client (ftplib, explicit FTPS with PROT P unless ``--plain``, one control connection, the
same block size) sends the same files to each, one after the other, as a camera sends a
burst.  ``--repeats`` bursts (default 3), each of new pictures: bare, ours, the mesh
left to go quiet, bare again; before them, three small frames warm the mesh (a node's
first import loads Pillow).  The desk pulls originals as ``--desk-policy`` says:
``requested`` (what `cammesh desk` does unless told otherwise: only thumbnails travel here)
or ``all`` (every original follows its thumbnail, during the burst; quiet means the desk
has them all).

- ``thumbnail_after_upload_p50_ms`` / ``_p99_ms``: from each upload's completion (the
  client has the STOR's 226 reply) to the desk's ``ThumbnailArrived`` line for that
  picture (one machine, one clock), over every burst's uploads; target p99 <= 150 ms;
  ``..._p50_p99_ms_each`` per burst;
- ``upload_to_captured_p50_p99_ms`` and ``captured_to_thumbnail_p50_p99_ms`` split that
  delay at the camera node's ``Captured`` line (the picture durable on its card);
- ``paced_100mb_s_thumbnail_p50_p99_ms``, beside the target: one more burst sent at a
  camera's own pace (``--pace``), where each import is not queued behind the ones before;
- ``upload_mb_s_each`` against ``bare_upload_mb_s_each``: the client's bytes over the time
  from its first STOR to its last 226, ours against the bare server's (the mean of the
  runs just before and just after ours); ``throughput_ratio`` is the median of the
  bursts' ratios, ``throughput_ratio_each`` all of them; target >= 0.90;
- ``cpu_s_per_burst``: processor seconds (user + system, from /proc) of each process
  while the burst was sent, and of the node and the desk after it until quiet: what the
  two cores had to share, against what the bare server and its client needed.

    python bench/ftp_ingest.py [--count 20] [--repeats 3] [--size 24mp|small] [--plain]
                               [--desk-policy requested|all]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from field import cached_pictures, picture_id  # noqa: E402

from mesh.identity import Identity  # noqa: E402
from tests.integration.devices import free_port  # noqa: E402
from tests.integration.ftp_camera import DATED, FtpMesh, camera, start_ftp_mesh  # noqa: E402
from tests.integration.nodes import wait_until  # noqa: E402

P99_TARGET_MS = 150.0
RATIO_TARGET = 0.90
BLOCK = 256 * 1024  # the client's write size, the same against both servers
WARM_UP = 3  # small frames sent before the bursts
QUIET_S = 0.5  # after a burst, the mesh is quiet once it uses less than QUIET_CPU of a
QUIET_CPU = 0.1  # core over QUIET_S

BARE_SERVER = """
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer
port, home, cert, key, tls = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
auth = DummyAuthorizer()
auth.add_user("bench", "bench", home, perm="elradfmw")
handler = TLS_FTPHandler if tls == "1" else FTPHandler
if tls == "1":
    handler.certfile, handler.keyfile = cert, key
handler.authorizer = auth
logging.basicConfig(level=logging.WARNING)
server = FTPServer(("127.0.0.1", int(port)), handler)
print("ready", flush=True)
server.serve_forever()
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """Processor seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def upload(port: int, user: str, password: str, pictures: list[Path], *, tls: bool,
           rate: float | None = None, folder: str = DATED) -> tuple[float, list[float], float]:
    """Send every picture in one session: (MB/s over the burst, each upload's 226 time, the
    client's own processor seconds).  ``rate``: bytes per second at most, as a camera's own
    link would carry them."""
    ftp = camera(port, user, password, tls=tls)
    try:
        ftp.mkd(folder)
        ftp.cwd(folder)
        done: list[float] = []
        started = time.monotonic()
        own = time.thread_time()
        sent = 0

        def pace(block: bytes) -> None:
            nonlocal sent
            sent += len(block)
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))

        for picture in pictures:
            with picture.open("rb") as f:
                reply = ftp.storbinary(f"STOR {picture.name}", f, blocksize=BLOCK,
                                       callback=pace)
            done.append(time.time())
            assert reply.startswith("226"), reply
        elapsed = time.monotonic() - started
        own = time.thread_time() - own
    finally:
        ftp.quit()
    return sum(p.stat().st_size for p in pictures) / elapsed / 1e6, done, own


def bare_upload(folder: Path, identity: Identity, pictures: list[Path], *, tls: bool
                ) -> tuple[float, dict[str, float]]:
    """The same burst to a bare pyftpdlib server: (MB/s, processor seconds of each side)."""
    home = folder / f"bare-{time.monotonic_ns()}"
    home.mkdir(parents=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, str(port), str(home), str(identity.cert_path),
         str(identity.key_path), "1" if tls else "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        before = cpu_s(server.pid)
        rate, _, client = upload(port, "bench", "bench", pictures, tls=tls)
        cpu = {"client": client, "bare_server": cpu_s(server.pid) - before}
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rate, cpu


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    at = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[at]


def first_events(node: Any, event: str) -> dict[str, float]:
    seen: dict[str, float] = {}
    for doc in node.events():
        if doc["event"] == event:
            seen.setdefault(doc["image_id"], doc["t"])
    return seen


def until_quiet(cpu_now: Callable[[], dict[str, float]]) -> dict[str, float]:
    """Wait until our processes use less than ``QUIET_CPU`` of a core over ``QUIET_S``; the
    processor seconds then."""
    last = cpu_now()
    for _ in range(int(600 / QUIET_S)):
        time.sleep(QUIET_S)
        now = cpu_now()
        if sum(now.values()) - sum(last.values()) < QUIET_CPU * QUIET_S:
            return now
        last = now
    raise AssertionError("the mesh did not go quiet within 600 s")


def burst(mesh: FtpMesh, folder: Path, identity: Identity, pictures: list[Path], *, tls: bool,
          name: str, pull_all: bool) -> dict[str, Any]:
    """Bare, ours, quiet (with ``pull_all`` the desk has every original), bare: one burst's
    figures."""
    ids = [picture_id(p) for p in pictures]
    cam = mesh.mesh["cam"].running.proc
    desk = mesh.mesh["desk"].running.proc
    assert cam is not None and desk is not None
    ftp_process = children(cam.pid)  # the FTP server's process (and spawn's helper, if any)
    ours_processes = {"camera_node": [cam.pid], "ftp_process": ftp_process, "desk": [desk.pid]}

    def cpu_now() -> dict[str, float]:
        return {part: sum(cpu_s(pid) for pid in pids) for part, pids in ours_processes.items()}

    bare_before, bare_cpu = bare_upload(folder, identity, pictures, tls=tls)
    start = cpu_now()
    ours, done, client = upload(mesh.ftp_port, "bench", mesh.passwords["bench"], pictures,
                                tls=tls, folder=name)
    sent = cpu_now()
    seen = wait_until("every thumbnail at the desk", lambda: (
        found if set(ids) <= set(found := first_events(mesh.desk, "ThumbnailArrived"))
        else None), timeout=600, every=0.2)
    if pull_all:
        wait_until("every original at the desk", lambda: set(ids) <= set(
            first_events(mesh.desk, "OriginalArrived")), timeout=1200, every=0.5)
    quiet = until_quiet(cpu_now)
    bare_after, bare_cpu_after = bare_upload(folder, identity, pictures, tls=tls)
    captured = first_events(mesh.cam, "Captured")
    return {
        "ours": ours, "bare": [bare_before, bare_after],
        "delays": [(seen[i] - t) * 1000 for i, t in zip(ids, done, strict=True)],
        # Where the time goes: the 226 to the picture on the card (Captured, logged before
        # the node hears of it), and from there to the thumbnail at the desk.
        "imports": [(captured[i] - t) * 1000 for i, t in zip(ids, done, strict=True)],
        "delivery": [(seen[i] - captured[i]) * 1000 for i in ids],
        "cpu": {
            "bare": {part: round((bare_cpu[part] + bare_cpu_after[part]) / 2, 2)
                     for part in bare_cpu},
            "ours_while_sent": {"client": round(client, 2),
                                **{part: round(sent[part] - start[part], 2) for part in sent}},
            "ours_after_until_quiet": {part: round(quiet[part] - sent[part], 2)
                                       for part in ("camera_node", "desk")},
        },
    }


def p50_p99(values: list[float]) -> list[float]:
    return [round(percentile(values, 50), 1), round(percentile(values, 99), 1)]


def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    tls = not args.plain
    sets = [cached_pictures(args.size, args.count, seed=11 + n) for n in range(args.repeats)]
    paced = cached_pictures(args.size, args.count, seed=11 + args.repeats)  # new pictures
    paced_ids = [picture_id(p) for p in paced]
    pull_all = args.desk_policy == "all"
    mesh = start_ftp_mesh(folder / "mesh", accounts={"bench": "Bench"}, host="127.0.0.1",
                          desk_args=("--policy", f"*={args.desk_policy}"))
    try:
        identity = Identity.load(mesh.mesh["cam"].card)
        # A node's first import loads Pillow and warms its threads and catalog; a few small
        # frames first, so that no burst's figure is a start-up's (each burst is shown).
        warm = cached_pictures("small", WARM_UP, seed=99)
        upload(mesh.ftp_port, "bench", mesh.passwords["bench"], warm, tls=tls, folder="warm")
        warm_ids = {picture_id(p) for p in warm}
        wait_until("the warm-up's pictures at the desk", lambda: warm_ids <= set(
            first_events(mesh.desk, "OriginalArrived" if pull_all else "ThumbnailArrived")),
            timeout=300, every=0.3)
        bursts = [burst(mesh, folder, identity, pictures, tls=tls, name=f"{DATED}-{n}",
                        pull_all=pull_all)
                  for n, pictures in enumerate(sets)]
        # Beside the target: a burst at a camera's own pace (a wired Z9's FTP tops out near
        # 100 MB/s), where the node's import is not queued behind loopback.
        _, paced_done, _ = upload(mesh.ftp_port, "bench", mesh.passwords["bench"], paced,
                                  tls=tls, rate=args.pace * 1e6, folder="paced")
        paced_seen = wait_until("every paced thumbnail at the desk", lambda: (
            found if set(paced_ids) <= set(found := first_events(mesh.desk, "ThumbnailArrived"))
            else None), timeout=600, every=0.2)
    finally:
        mesh.stop()
    delays = [d for b in bursts for d in b["delays"]]
    paced_delays = [(paced_seen[i] - t) * 1000 for i, t in zip(paced_ids, paced_done,
                                                                strict=True)]
    ratios = [b["ours"] / statistics.mean(b["bare"]) for b in bursts]
    ratio = statistics.median(ratios)
    p99 = percentile(delays, 99)
    return {
        "bench": "ftp_ingest",
        "uploads_per_burst": args.count,
        "bursts": args.repeats,
        "size": args.size,
        "bytes_per_burst": [sum(p.stat().st_size for p in pictures) for pictures in sets],
        "client": f"ftplib {'FTP_TLS (AUTH TLS, PROT P)' if tls else 'FTP (plain)'}, "
                  f"{BLOCK // 1024} KiB blocks, one session",
        "link": "loopback; the desk is a peer node over TLS",
        "desk_policy": args.desk_policy,
        "warm_up": f"{WARM_UP} small frames before the bursts",
        "machine": {"cpus": os.cpu_count(), "load_average_1m_at_end": os.getloadavg()[0]},
        "thumbnail_after_upload_p50_ms": round(percentile(delays, 50), 1),
        "thumbnail_after_upload_p99_ms": round(p99, 1),
        "thumbnail_after_upload_max_ms": round(max(delays), 1),
        "thumbnail_after_upload_p50_p99_ms_each": [p50_p99(b["delays"]) for b in bursts],
        "upload_to_captured_p50_p99_ms": p50_p99([d for b in bursts for d in b["imports"]]),
        "captured_to_thumbnail_p50_p99_ms": p50_p99([d for b in bursts for d in b["delivery"]]),
        "thumbnail_p99_target_ms": P99_TARGET_MS,
        "thumbnail_p99_met": p99 <= P99_TARGET_MS,
        f"paced_{args.pace:g}mb_s_thumbnail_p50_p99_ms": p50_p99(paced_delays),
        "upload_mb_s_each": [round(b["ours"], 1) for b in bursts],
        "bare_upload_mb_s_each_before_after": [[round(x, 1) for x in b["bare"]] for b in bursts],
        "throughput_ratio_each": [round(r, 3) for r in ratios],
        "throughput_ratio": round(ratio, 3),
        "throughput_ratio_spread": [round(min(ratios), 3), round(max(ratios), 3)],
        "throughput_ratio_target": RATIO_TARGET,
        "throughput_met": ratio >= RATIO_TARGET,
        "cpu_s_per_burst": [b["cpu"] for b in bursts],
        "met": p99 <= P99_TARGET_MS and ratio >= RATIO_TARGET,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3, help="bursts, each of new pictures")
    parser.add_argument("--size", default="24mp", choices=["24mp", "small"])
    parser.add_argument("--plain", action="store_true", help="plain FTP instead of FTPS")
    parser.add_argument("--desk-policy", default="requested", choices=["requested", "all"],
                        help="which originals the desk pulls: 'requested' (the default of "
                        "`cammesh desk`: none here) or 'all' (every one, during the bursts)")
    parser.add_argument("--pace", type=float, default=100.0, metavar="MB/S",
                        help="the rate of the paced burst (reported beside the target)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cammesh-ftp-bench-") as tmp:
        print(json.dumps(run(args, Path(tmp)), indent=2))


if __name__ == "__main__":
    main()
