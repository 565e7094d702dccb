"""The XMP packet of an editor's marks: set fields written, unset ones left out, text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from storage.marks import MAX_SHORT_TEXT, Marks
from storage.xmp import NAMESPACES, read_marks, xml_text, xmp_packet


def properties(packet: bytes) -> set[str]:
    body = packet.split(b"?>", 1)[1].rsplit(b"<?xpacket", 1)[0]
    about = ET.fromstring(body)[0][0]
    return {child.tag for child in about}


def test_unset_marks_write_an_empty_description() -> None:
    assert properties(xmp_packet(Marks())) == set()


def test_every_set_field_is_written_in_its_namespace() -> None:
    marks = Marks(rating=0, color=3, tagged=True, caption="c", headline="h", credit="cr",
                  keywords=("a", "b"))
    tags = properties(xmp_packet(marks))
    xmp, dc, ps, pm = (NAMESPACES[p] for p in ("xmp", "dc", "photoshop", "photomechanic"))
    assert tags == {f"{{{xmp}}}Rating", f"{{{xmp}}}Label", f"{{{pm}}}ColorClass",
                    f"{{{pm}}}Tagged", f"{{{dc}}}description", f"{{{ps}}}Headline",
                    f"{{{ps}}}Credit", f"{{{dc}}}subject"}
    assert pm == "http://ns.camerabits.com/photomechanic/1.0/"


def test_a_rating_of_zero_is_written_and_a_colour_label_is_the_editors() -> None:
    packet = xmp_packet(Marks(rating=0, color=1), {1: "Front page"})
    assert b"<xmp:Rating>0</xmp:Rating>" in packet
    assert b"<xmp:Label>Front page</xmp:Label>" in packet
    assert b"<photomechanic:ColorClass>1</photomechanic:ColorClass>" in packet


def test_markup_in_a_caption_is_text_not_xml() -> None:
    hostile = '</rdf:li></rdf:Alt><x:evil a="1"/>&amp; <script>alert(1)</script>'
    packet = xmp_packet(Marks(caption=hostile, keywords=("<b>",)))
    assert b"<script>" not in packet and b"<x:evil" not in packet
    assert read_marks(packet) == Marks(caption=hostile, keywords=("<b>",))


def test_characters_that_xml_cannot_carry_are_dropped() -> None:
    # Marks refuses control characters itself; the writer still never emits what XML forbids.
    assert xml_text("a\x00b\x1bc\td\ne\ufffe\ud800") == "abc\td\ne"
    packet = xmp_packet(Marks(caption="line one\nline two\ttab"))
    assert read_marks(packet).caption == "line one\nline two\ttab"


text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40)


@given(rating=st.none() | st.integers(0, 5), color=st.none() | st.integers(1, 8),
       tagged=st.booleans(), caption=text, headline=text, credit=text,
       keywords=st.lists(text, max_size=4))
def test_what_is_written_reads_back(rating: int | None, color: int | None, tagged: bool,
                                    caption: str, headline: str, credit: str,
                                    keywords: list[str]) -> None:
    try:
        marks = Marks(rating=rating, color=color, tagged=tagged, caption=caption,
                      headline=headline, credit=credit, keywords=tuple(keywords))
    except ValueError:
        assume(False)  # a value the desk refuses never reaches the writer
    assert read_marks(xmp_packet(marks)) == marks


def test_limits_come_from_the_marks_value() -> None:
    with pytest.raises(ValueError, match="headline"):
        Marks(headline="x" * (MAX_SHORT_TEXT + 1))
