"""An XMP packet from an editor's marks: the sidecar beside an exported original, and the
packet a delivered JPEG copy carries.

The properties are the ones Photo Mechanic, Lightroom and exiftool read: ``xmp:Rating`` and
``xmp:Label`` (the colour class's label), Photo Mechanic's own ``photomechanic:ColorClass``
and ``photomechanic:Tagged`` (namespace ``http://ns.camerabits.com/photomechanic/1.0/``, as
exiftool's PhotoMechanic.pm and Photo Mechanic's own sidecars spell it), and the IPTC Core
caption fields ``dc:description`` (a language alternative), ``photoshop:Headline``,
``photoshop:Credit`` and ``dc:subject`` (a bag of keywords).  A field that was never set is
left out, never written as a zero.  The XML is built with ``xml.etree``, which escapes text;
characters that XML 1.0 cannot carry at all (most control characters) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Final

from storage.marks import DEFAULT_COLOR_LABELS, Marks

NAMESPACES: Final = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "photomechanic": "http://ns.camerabits.com/photomechanic/1.0/",
}
XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"
PACKET_ID: Final = "W5M0MpCehiHzreSzNTczkc9d"  # the fixed id of every XMP packet (XMP spec part 1)

for _prefix, _uri in NAMESPACES.items():
    ET.register_namespace(_prefix, _uri)

# XML 1.0 allows tab, newline, carriage return and everything from U+0020 on, less the
# surrogates and U+FFFE/U+FFFF; anything else cannot appear even escaped.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _q(prefix: str, name: str) -> str:
    return f"{{{NAMESPACES[prefix]}}}{name}"


def xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 cannot carry."""
    return _NOT_XML.sub("", text)


def description(marks: Marks, labels: Mapping[int, str] | None = None) -> ET.Element:
    """The ``rdf:Description`` holding every set field of ``marks``."""
    labels = DEFAULT_COLOR_LABELS if labels is None else labels
    about = ET.Element(_q("rdf", "Description"), {_q("rdf", "about"): ""})

    def simple(prefix: str, name: str, value: str) -> None:
        ET.SubElement(about, _q(prefix, name)).text = xml_text(value)

    def container(prefix: str, name: str, kind: str, items: list[str], lang: bool) -> None:
        holder = ET.SubElement(ET.SubElement(about, _q(prefix, name)), _q("rdf", kind))
        for item in items:
            li = ET.SubElement(holder, _q("rdf", "li"), {XML_LANG: "x-default"} if lang else {})
            li.text = xml_text(item)

    if marks.rating is not None:
        simple("xmp", "Rating", str(marks.rating))
    if marks.color is not None:
        label = labels.get(marks.color) or DEFAULT_COLOR_LABELS[marks.color]
        simple("xmp", "Label", label)
        simple("photomechanic", "ColorClass", str(marks.color))
    if marks.tagged:
        simple("photomechanic", "Tagged", "True")
    if marks.caption:
        container("dc", "description", "Alt", [marks.caption], lang=True)
    if marks.headline:
        simple("photoshop", "Headline", marks.headline)
    if marks.credit:
        simple("photoshop", "Credit", marks.credit)
    if marks.keywords:
        container("dc", "subject", "Bag", list(marks.keywords), lang=False)
    return about


def xmp_packet(marks: Marks, labels: Mapping[int, str] | None = None) -> bytes:
    """A complete XMP packet (UTF-8, with its ``xpacket`` wrapper) for ``marks``.

    The same bytes serve as a ``.xmp`` sidecar and as the packet of a JPEG's APP1 segment.
    """
    meta = ET.Element(_q("x", "xmpmeta"))
    rdf = ET.SubElement(meta, _q("rdf", "RDF"))
    rdf.append(description(marks, labels))
    ET.indent(meta, space=" ")
    begin = ET.ProcessingInstruction("xpacket", f'begin="\ufeff" id="{PACKET_ID}"')
    end = ET.ProcessingInstruction("xpacket", 'end="w"')
    return b"\n".join(
        [ET.tostring(begin, encoding="utf-8", xml_declaration=False),
         ET.tostring(meta, encoding="utf-8", xml_declaration=False),
         ET.tostring(end, encoding="utf-8", xml_declaration=False), b""]
    )


def read_marks(packet: bytes) -> Marks:
    """The marks an XMP packet written by ``xmp_packet`` holds (for tests and round trips).

    Raises ValueError for a packet that is not XML or holds an out-of-range mark.
    """
    try:
        root = ET.fromstring(packet.strip().split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0])
    except (ET.ParseError, IndexError) as exc:
        raise ValueError(f"not an XMP packet: {exc}") from exc
    about = root.find(f"{_q('rdf', 'RDF')}/{_q('rdf', 'Description')}")
    if about is None:
        raise ValueError("the XMP packet has no rdf:Description")

    def text(prefix: str, name: str) -> str | None:
        node = about.find(_q(prefix, name))
        return None if node is None else node.text or ""

    def items(prefix: str, name: str) -> list[str]:
        node = about.find(_q(prefix, name))
        if node is None:
            return []
        return [li.text or "" for holder in node for li in holder.iter(_q("rdf", "li"))]

    rating, color = text("xmp", "Rating"), text("photomechanic", "ColorClass")
    return Marks(
        rating=None if rating is None else int(rating),
        color=None if color is None else int(color),
        tagged=text("photomechanic", "Tagged") == "True",
        caption=next(iter(items("dc", "description")), ""),
        headline=text("photoshop", "Headline") or "",
        credit=text("photoshop", "Credit") or "",
        keywords=tuple(items("dc", "subject")),
    )
