"""The RFB client-stream filter that makes viewer consoles view-only."""

from __future__ import annotations

import struct

import pytest

from compute.rfb import ClientStreamFilter, RfbProtocolError

pytestmark = pytest.mark.unit

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"
PIXEL_FORMAT = b"\x00" + bytes(19)
ENCODINGS = struct.pack(">BxHii", 2, 2, 0, -258)
UPDATE = struct.pack(">BBHHHH", 3, 1, 0, 0, 720, 400)
KEY = struct.pack(">BBxxI", 4, 1, ord("a"))
POINTER = struct.pack(">BBHH", 5, 1, 10, 10)
CUT = struct.pack(">BxxxI", 6, 5) + b"hello"
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, ord("a"), 0x1E)
FENCE = struct.pack(">BxxxIB", 248, 0, 2) + b"ab"
XVP = struct.pack(">BxBB", 250, 1, 4)
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 720, 400)
STREAM = HANDSHAKE + PIXEL_FORMAT + ENCODINGS + UPDATE + KEY + POINTER + CUT + QEMU_KEY
STREAM += FENCE + XVP + CONTINUOUS


def test_a_viewer_stream_keeps_everything_but_input():
    result = ClientStreamFilter(view_only=True).feed(STREAM)
    assert result.forward == HANDSHAKE + PIXEL_FORMAT + ENCODINGS + UPDATE + FENCE + CONTINUOUS
    assert result.dropped == [
        "KeyEvent",
        "PointerEvent",
        "ClientCutText",
        "QemuClientMessage",
        "Xvp",
    ]
    assert result.input_seen


def test_an_operator_stream_passes_unchanged_even_one_byte_at_a_time():
    stream_filter = ClientStreamFilter(view_only=False)
    out = b"".join(stream_filter.feed(STREAM[i : i + 1]).forward for i in range(len(STREAM)))
    assert out == STREAM


def test_a_partial_message_waits_for_the_rest_and_update_requests_are_not_activity():
    stream_filter = ClientStreamFilter(view_only=True)
    assert stream_filter.feed(HANDSHAKE + UPDATE[:4]).forward == HANDSHAKE
    result = stream_filter.feed(UPDATE[4:])
    assert result.forward == UPDATE and not result.input_seen


def test_a_role_downgrade_applies_from_the_next_message():
    stream_filter = ClientStreamFilter(view_only=False)
    assert stream_filter.feed(HANDSHAKE + KEY).forward == HANDSHAKE + KEY
    stream_filter.view_only = True
    assert stream_filter.feed(KEY + UPDATE).forward == UPDATE


def test_vnc_authentication_responses_are_framed():
    stream = b"RFB 003.008\n\x02" + bytes(16) + b"\x01" + KEY
    assert ClientStreamFilter(view_only=True).feed(stream).forward == stream[: -len(KEY)]


@pytest.mark.parametrize(
    "stream",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"RFB 003.003\n",
        b"RFB 003.008\n\x13",  # VeNCrypt: cannot be framed, so it is refused
        HANDSHAKE + b"\x07" + bytes(20),
        HANDSHAKE + struct.pack(">BxxxI", 6, 1 << 24),
    ],
    ids=["not-rfb", "rfb-3.3", "vencrypt", "unknown-message", "huge-cut-text"],
)
def test_streams_that_cannot_be_framed_safely_are_refused(stream):
    with pytest.raises(RfbProtocolError):
        ClientStreamFilter(view_only=True).feed(stream)
