"""``cammesh desk``: run a desk node with its web page; ``--demo`` makes a mesh to look at.

``cammesh desk CARD`` is ``cammesh node CARD`` plus the page of FIG. 13-18 on
``--listen`` (loopback by default).  ``cammesh desk --demo`` creates a desk and
two cameras in a temporary folder, runs all three in this process and shows
their pictures arriving; ``--screenshot FILE`` saves a PNG of the page (headless
Chromium through playwright) and exits.
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from mesh.errors import MeshError
from mesh.node_commands import add_device_options

Subparsers = Any
log = logging.getLogger("cammesh.desk")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def add_desk(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "desk",
        help="run a desk: every camera's thumbnails on a live web page",
        description="Run this card as a device (like `cammesh node`) and show every camera's "
        "thumbnails, newest first, on a local web page: request originals first, refuse the "
        "ones not needed, ask for smaller copies, open and download what arrived. "
        "By default the desk pulls what an editor expects: every thumbnail, and only the "
        "originals (or smaller copies) asked for here (--policy '*=requested'); "
        "--policy '*=all' mirrors every original in the background as well.",
    )
    p.add_argument("card", type=Path, nargs="?", metavar="CARD", help="the desk's card folder")
    p.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve the page (default 127.0.0.1:8080; port 0: any free one)")
    add_device_options(p, listen_flag="--node-listen", default_policy="requested")
    p.add_argument("--demo", action="store_true",
                   help="no CARD: make a desk and two cameras in a temporary folder and run them")
    p.add_argument("--screenshot", type=Path, metavar="PNG",
                   help="with --demo: save a picture of the page after the demo ran, then exit")
    p.add_argument("--codes", type=Path, metavar="FILE",
                   help="a Photo Mechanic code-replacement file (code<TAB>text lines): "
                   "\\code\\ in a caption is replaced as it is typed")
    from mesh.deliver_commands import add_delivery_options, add_export_options

    add_delivery_options(p)
    add_export_options(p)
    p.set_defaults(run=run_desk_command)


def run_desk_command(args: argparse.Namespace) -> int:
    from mesh.node_commands import build_runtime, ftp_settings
    from mesh.runtime import Address

    logging.getLogger("cammesh").setLevel(logging.INFO)
    logging.getLogger("cammesh.node").setLevel(logging.WARNING)
    web = Address.parse(args.listen)
    if args.screenshot is not None and not args.demo:
        raise MeshError("--screenshot goes with --demo (it photographs the demo's page)")
    if args.demo:
        trio.run(_demo, web, args.screenshot)
        return 0
    if args.card is None:
        raise MeshError("name the desk's CARD folder, or run `cammesh desk --demo`")
    from mesh.daemon import run_node
    from mesh.deliver_commands import check_delivery_options, deliverer_for, export_for

    check_delivery_options(args)
    from storage.card import Card

    codes = None
    if args.codes is not None:
        from mesh.desk_marks import DeskMarks

        try:
            codes = DeskMarks.codes_from(args.codes)
        except (OSError, ValueError) as exc:
            raise MeshError(f"the code-replacement file {args.codes} cannot be used: {exc}") from exc
    with Card.open(args.card) as card:
        runtime = build_runtime(args, card)
        ftp = ftp_settings(args)
        deliverer = deliverer_for(args, runtime)
        exporter = export_for(args, runtime)

        async def main() -> None:
            from mesh.desk import Desk, serve_desk

            async with trio.open_nursery() as nursery:
                await nursery.start(lambda task_status: run_node(
                    runtime, discovery=not args.no_discovery, interface=args.interface,
                    watch=args.watch, watch_mode=args.watch_mode, ftp=ftp,
                    task_status=task_status))
                desk = Desk(runtime, host=web.host, codes=codes)
                if deliverer is not None:
                    desk.routes.append(deliverer.route)
                    await nursery.start(deliverer.run)
                if exporter is not None:
                    desk.routes.append(exporter.route)
                    await nursery.start(exporter.run)
                url = await nursery.start(lambda task_status: serve_desk(
                    runtime, host=web.host, port=web.port, desk=desk, task_status=task_status))
                print(f"the desk is on {url}/  (Ctrl-C to stop)", flush=True)
                await _until_signal()
                nursery.cancel_scope.cancel()

        trio.run(main)
    return 0


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


# --- the demo ------------------------------------------------------------------------------


async def _demo(web: Any, screenshot: Path | None) -> None:
    """A desk and two cameras on loopback; the cameras send at a Wi-Fi-like trickle so the
    page shows every stage: thumbnails first, originals arriving, reserved, not necessary."""
    from mesh.desk import Desk, serve_desk
    from mesh.desk_demo import DeviceSpec, make_mesh, runtime_for, write_demo_pictures
    from protocol.messages import Role
    from storage.card import Card
    from storage.importer import import_paths

    with tempfile.TemporaryDirectory(prefix="cammesh-desk-demo-") as tmp:
        folder = Path(tmp)
        desk_path, *camera_paths = make_mesh(folder, [
            DeviceSpec("desk", Role.DESK), DeviceSpec("north-cam", Role.CAMERA),
            # A card nearly full: it disperses its oldest originals to the desk (FIG. 14B).
            DeviceSpec("south-cam", Role.CAMERA, capacity=3_250_000),
        ])
        cards = [Card.open(p) for p in (desk_path, *camera_paths)]
        try:
            now = time.time()
            for seed, card in enumerate(cards[1:], start=1):
                pictures = write_demo_pictures(folder / f"pictures-{seed}", 10, seed=seed,
                                               start_time=now - 600 * seed)
                import_paths(card, pictures, now=now)
            cameras = [runtime_for(p, c, rate_limit=120_000) for p, c in
                       zip(camera_paths, cards[1:], strict=True)]
            async with trio.open_nursery() as nursery:
                from mesh.runtime import Address

                ports = [await nursery.start(c.run) for c in cameras]
                desk = runtime_for(desk_path, cards[0],
                                   peers=[Address("127.0.0.1", port) for port in ports])
                await nursery.start(desk.run)
                board = Desk(desk, host=web.host)
                url = await nursery.start(lambda task_status: serve_desk(
                    desk, host=web.host, port=web.port, desk=board, task_status=task_status))
                print(f"the demo desk is on {url}/  (Ctrl-C to stop)", flush=True)
                await _demo_choices(board, [c.identity.device_id for c in cameras])
                if screenshot is None:
                    await _until_signal()
                else:
                    # The moment of FIG. 13A: originals on their way while the rest wait.
                    ready = ("desk.status.transferring > 0 && desk.status.marks.received >= 2"
                             " && desk.status.marks.requested >= 1 && desk.status.marks.held >= 1")
                    await trio.to_thread.run_sync(
                        lambda: take_screenshot(url, screenshot, ready=ready))
                    print(f"wrote {screenshot}")
                nursery.cancel_scope.cancel()
        finally:
            for card in cards:
                card.close()


async def _demo_choices(board: Any, cameras: list[str]) -> None:
    """Wait for the thumbnails, then do what an editor would: pull the oldest of one camera
    first (FIG. 14A), a smaller copy of one, and refuse two of the other (FIG. 13B)."""
    from protocol.store import Where

    rt = board.runtime
    while True:
        records = await rt.call(rt.card.images)
        if len(records) >= 20:
            break
        await trio.sleep(0.2)
    waiting = {
        camera: sorted((r.image_id for r in records if r.origin == camera and r.where is Where.ABSENT),
                       key=lambda i: next(r.seq for r in records if r.image_id == i))
        for camera in cameras
    }
    north, south = waiting[cameras[0]], waiting[cameras[1]]
    if len(north) >= 4 and len(south) >= 6:
        await board.request(north[:4], None, None)
        await board.request(south[4:5], 640, None)
        await board.refuse(south[2:4])
    await trio.sleep(1.0)


def take_screenshot(
    url: str, path: Path, *, width: int = 1400, height: int = 900, ready: str = "true"
) -> None:
    """Save a PNG of the page at ``url`` with headless Chromium (Debian's, not a download),
    once the JavaScript condition ``ready`` holds (or after 20 s)."""
    try:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise MeshError("--screenshot needs playwright: pip install playwright") from exc
    if not Path(CHROMIUM).exists():
        raise MeshError(f"--screenshot needs Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url + "/")
            page.wait_for_function("window.desk && window.desk.loaded && window.desk.tiles.size > 0")
            page.wait_for_timeout(500)  # let lazy thumbnails decode
            try:
                page.wait_for_function(ready, timeout=20_000)
            except PlaywrightTimeout:
                log.warning("the page never showed %s; taking the picture anyway", ready)
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()


COMMANDS = [add_desk]
