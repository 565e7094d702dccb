"""The editor's marks on the desk page (issue 19): the HTTP answers that set them.

Routes (all JSON; a refused value answers 400 with the reason, nothing changed):

``POST /api/marks {"ids": [...], "set": {"rating": 0-5|null, "color": 1-8|null,
"tagged": bool, "caption", "headline", "credit": text, "keywords": [text]}}``
    set those fields on each picture; answers ``{"ok", "marks": {id: marks}}``.
``GET /api/labels`` / ``POST /api/labels {"class": 1-8, "label": text}``
    the colour classes' labels (Photo Mechanic's names until renamed).
``POST /api/template {"origin": device id, "set": {caption fields}, "only_empty": bool,
"keep": bool}``
    a caption template applied to every picture of one camera on the board; with ``keep``,
    also to that camera's pictures that arrive later while this desk runs (``"set": {}``
    with ``keep`` forgets it).
``GET /api/codes`` / ``POST /api/codes {"text": a code-replacement file}``
    Photo Mechanic's code replacements (``code<TAB>text`` lines) that the page expands as
    ``\\code\\`` is typed.

Marks are stored by the card (``storage.card_marks``), then handed to the node, which sends
them to every peer (protocol/marks.py); the board reads them back, so every page sees the
change in its next batch of tiles, and another desk's marks as they arrive (MarksArrived).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh.errors import HttpError
from storage.errors import InvalidMarks, NotFound
from storage.marks import FIELDS, MAX_SHORT_TEXT, MAX_TEXT

if TYPE_CHECKING:
    from mesh.desk import Desk
    from mesh.desk_board import Facts

log = logging.getLogger("cammesh.desk")

CAPTION_FIELDS = ("caption", "headline", "credit", "keywords")
MAX_CODES = 5000  # lines of one code-replacement file
MAX_IDS = 5000  # pictures marked by one request
_ID = re.compile(r"[0-9a-f]{64}\Z")
ROUTES = {("GET", "/api/labels"), ("GET", "/api/codes"), ("POST", "/api/marks"),
          ("POST", "/api/labels"), ("POST", "/api/template"), ("POST", "/api/codes")}


def parse_codes(text: str) -> dict[str, str]:
    """Photo Mechanic's code-replacement file: one ``code<TAB>text`` per line.  Blank lines and
    lines without a tab are skipped; a later line for the same code wins.  ValueError when a
    code or text is too long or holds control characters, or the file is too long."""
    codes: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if len(lines) > MAX_CODES:
        raise ValueError(f"a code-replacement file has at most {MAX_CODES} lines")
    for number, line in enumerate(lines, start=1):
        if "\t" not in line:
            continue
        code, replacement = line.split("\t", 1)
        replacement = replacement.split("\t", 1)[0]  # further columns are other variants
        code = code.strip()
        if not code:
            continue
        if "\\" in code or len(code) > 64:
            raise ValueError(f"line {number}: a code is at most 64 characters, without a backslash")
        if len(replacement) > MAX_TEXT or any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in replacement):
            raise ValueError(f"line {number}: the text is too long or holds control characters")
        codes[code] = replacement
    return codes


def expand_codes(text: str, codes: Mapping[str, str]) -> str:
    """``\\code\\`` replaced by its text (the page does the same as the editor types);
    an unknown code is left as it was written."""
    out, rest = [], text
    while "\\" in rest:
        before, _, after = rest.partition("\\")
        code, closed, tail = after.partition("\\")
        if closed and code in codes:
            out.append(before + codes[code])
            rest = tail
        else:
            out.append(before + "\\")
            rest = after
    out.append(rest)
    return "".join(out)


class DeskMarks:
    """The marks routes of one desk; ``route`` answers the requests that are its own."""

    def __init__(self, desk: Desk, *, codes: Mapping[str, str] | None = None,
                 codes_source: str = "") -> None:
        self.desk = desk
        self.codes = dict(codes or {})
        self.codes_source = codes_source
        # Templates kept for a camera's later pictures: origin -> (fields, only_empty).
        self.templates: dict[str, tuple[dict[str, Any], bool]] = {}

    @classmethod
    def codes_from(cls, path: Path) -> dict[str, str]:
        """Read a code-replacement file (UTF-8, or Latin-1 as older Photo Mechanic wrote)."""
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        return parse_codes(text)

    async def load_labels(self) -> None:
        rt = self.desk.runtime
        self.desk.board.labels = await rt.call(rt.card.color_labels)

    async def answer(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON answer to one of the routes above (``body``: a POST's JSON), None for a
        request that is not one of them; HttpError says why a request changed nothing."""
        if method == "GET" and path == "/api/labels":
            return {"labels": self._labels_json()}
        if method == "GET" and path == "/api/codes":
            return {"codes": self.codes, "source": self.codes_source}
        if method != "POST":
            return None
        if path == "/api/marks":
            return await self.set_marks(_ids(body.get("ids")), _fields(body.get("set")))
        if path == "/api/labels":
            return await self.set_label(body.get("class"), body.get("label"))
        if path == "/api/template":
            keep = body.get("keep") is True
            if keep and body.get("set") == {} and isinstance(body.get("origin"), str):
                self.templates.pop(body["origin"], None)
                return {"ok": True, "pictures": 0}
            return await self.apply_template(body.get("origin"), _fields(body.get("set")),
                                             only_empty=body.get("only_empty") is True, keep=keep)
        if path == "/api/codes":
            return self.set_codes(body.get("text"), body.get("source"))
        return None

    async def set_marks(self, ids: list[str], fields: dict[str, Any]) -> dict[str, Any]:
        """Set ``fields`` on every picture of ``ids``: all of them, or (400) none."""
        rt = self.desk.runtime
        card = rt.card

        def write() -> dict[str, Any]:
            now = rt.now()
            marks = card.set_marks_of(ids, now=now, **fields)
            for image_id in marks:  # the marks travel to every peer (protocol/marks.py)
                rt.node.marked(image_id, now)
            return {i: m.as_json() for i, m in marks.items()}

        try:
            marks = await rt.call(write)
        except (InvalidMarks, ValueError, TypeError) as exc:
            raise HttpError(400, str(exc)) from exc
        except NotFound as exc:
            raise HttpError(404, str(exc)) from exc
        self.desk.reread(ids)
        return {"ok": True, "marks": marks}

    async def set_label(self, number: object, label: object) -> dict[str, Any]:
        rt = self.desk.runtime
        if type(number) is not int or not isinstance(label, str):
            raise HttpError(400, "name a colour class (1-8) and its label as text")
        try:
            await rt.call(lambda: rt.card.set_color_label(number, label, now=rt.now()))
        except InvalidMarks as exc:
            raise HttpError(400, str(exc)) from exc
        await self.load_labels()
        self.desk.board.status_changed()
        self.desk.wake()
        return {"ok": True, "labels": self._labels_json()}

    async def apply_template(self, origin: object, fields: dict[str, Any], *,
                             only_empty: bool, keep: bool = False) -> dict[str, Any]:
        """A caption template for one camera's pictures: the fields given, on each of them
        (with ``only_empty``, only where that field is still empty; with ``keep``, on its
        pictures that arrive later too)."""
        if not isinstance(origin, str) or set(fields) - set(CAPTION_FIELDS) or not fields:
            raise HttpError(400, f"a template names a camera and some of {', '.join(CAPTION_FIELDS)}")
        facts = [t.facts for t in self.desk.board.tiles.values() if t.facts.origin == origin]
        if not facts and not keep:
            raise HttpError(404, "no pictures of that camera are on this desk")
        changed = await self._apply(facts, fields, only_empty)
        if keep:
            self.templates[origin] = (fields, only_empty)
        return {"ok": True, "pictures": changed}

    async def arrived(self, new: list[Facts]) -> None:
        """New pictures on the board: a kept template of their camera applies to them."""
        for origin, (fields, only_empty) in self.templates.items():
            mine = [f for f in new if f.origin == origin]
            if mine:
                try:
                    await self._apply(mine, fields, only_empty)
                except HttpError as exc:  # the camera's template no longer fits: say so, go on
                    log.warning("the caption template for %s was not applied: %s", origin[:12], exc)

    async def _apply(self, facts: list[Facts], fields: dict[str, Any], only_empty: bool) -> int:
        """Each field on the pictures where it is wanted, one commit per field."""
        changed: set[str] = set()
        for name, value in fields.items():
            ids = [f.image_id for f in facts if not only_empty or not getattr(f.marks, name)]
            for start in range(0, len(ids), MAX_IDS):
                await self.set_marks(ids[start : start + MAX_IDS], {name: value})
            changed.update(ids)
        return len(changed)

    def set_codes(self, text: object, source: object) -> dict[str, Any]:
        if not isinstance(text, str):
            raise HttpError(400, "send the code-replacement file's text as \"text\"")
        try:
            self.codes = parse_codes(text)
        except ValueError as exc:
            raise HttpError(400, f"that code-replacement file was refused: {exc}") from exc
        self.codes_source = source[:MAX_SHORT_TEXT] if isinstance(source, str) else ""
        return {"ok": True, "codes": len(self.codes)}

    def _labels_json(self) -> dict[str, str]:
        return {str(n): text for n, text in sorted(self.desk.board.labels.items())}


def _ids(value: object) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_IDS:
        raise HttpError(400, f"name the pictures as a list of 1 to {MAX_IDS} ids")
    if not all(isinstance(i, str) and _ID.match(i) for i in value):
        raise HttpError(400, "a picture id is 64 lowercase hexadecimal characters")
    return list(dict.fromkeys(value))


def _fields(value: object) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise HttpError(400, f"\"set\" is an object of marks to change: {', '.join(FIELDS)}")
    unknown = set(value) - set(FIELDS)
    if unknown:
        raise HttpError(400, f"no mark is called {', '.join(sorted(unknown))}; marks are {', '.join(FIELDS)}")
    if "keywords" in value:
        words = value["keywords"]
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise HttpError(400, "keywords are a list of words")
        value = {**value, "keywords": tuple(w.strip() for w in words if w.strip())}
    return value
