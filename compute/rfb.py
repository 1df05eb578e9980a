"""The client half of the RFB (VNC) protocol, parsed just enough to filter it.

The console proxy reads what the browser sends to the VM's VNC server through
:class:`ClientStreamFilter`. It frames the stream exactly as the server will (RFC 6143
plus the extensions noVNC and QEMU speak), so it can

- drop every input message (keys, pointer, clipboard, QEMU key events, xvp power
  commands, desktop resize) for view-only sessions while keeping the rest (pixel format,
  encodings, update requests, fences) flowing, and
- tell user activity (input) from the update requests a client sends all the time, for
  the idle timeout.

A stream it cannot frame (an unknown security type or message) raises
:class:`RfbProtocolError`: guessing would let input through, so the proxy closes.

Client → server, after the 12-byte ``RFB 003.00x\\n`` version (3.7 and 3.8 only):
one security-type byte, 16 more bytes for VNC authentication (type 2), the one-byte
ClientInit, then messages:

======  ===============================  ===================================
type    message                          length
======  ===============================  ===================================
0       SetPixelFormat                   20
2       SetEncodings                     4 + 4 × count (u16 at offset 2)
3       FramebufferUpdateRequest         10
4       KeyEvent                         8                       (input)
5       PointerEvent                     6                       (input)
6       ClientCutText                    8 + |length| (s32 at 4) (input)
150     EnableContinuousUpdates          10
248     ClientFence                      9 + length (u8 at 8)
250     xvp (shutdown/reboot/reset)      4                       (input)
251     SetDesktopSize                   8 + 16 × screens (u8 at 6)  (input)
255/0   QEMU extended KeyEvent           12                      (input)
255/1   QEMU audio (op u16 at 2)         4, or 10 for op 2 (set format)
======  ===============================  ===================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

VERSION_LENGTH = 12
SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2
VNC_AUTH_RESPONSE = 16
# A client cut text longer than this is refused (noVNC pastes are far smaller).
MAX_CUT_TEXT = 1 << 20

INPUT_TYPES = frozenset({4, 5, 6, 250, 251})
NAMES = {
    0: "SetPixelFormat",
    2: "SetEncodings",
    3: "FramebufferUpdateRequest",
    4: "KeyEvent",
    5: "PointerEvent",
    6: "ClientCutText",
    150: "EnableContinuousUpdates",
    248: "ClientFence",
    250: "Xvp",
    251: "SetDesktopSize",
    255: "QemuClientMessage",
}


class RfbProtocolError(Exception):
    """The client stream cannot be framed (or breaks a limit); close the session."""


@dataclass
class FilterResult:
    """What one chunk of client bytes turned into."""

    forward: bytes = b""
    input_seen: bool = False
    dropped: list[str] = field(default_factory=list)


class ClientStreamFilter:
    """Incremental framer for the client → server RFB stream.

    ``feed(chunk)`` returns the bytes to forward (whole messages only; a partial
    message waits for the rest) and whether the chunk carried user input. With
    ``view_only`` input messages are dropped and named in ``dropped``; the switch can be
    flipped at any time (a role downgrade during a session) and applies from the next
    message on.
    """

    def __init__(self, *, view_only: bool):
        self.view_only = view_only
        self.stage = "version"
        self.buffer = bytearray()
        self.messages = 0

    def feed(self, chunk: bytes) -> FilterResult:
        self.buffer += chunk
        result = FilterResult()
        out = bytearray()
        while True:
            need = self._needed()
            if need is None or len(self.buffer) < need:
                break
            message = bytes(self.buffer[:need])
            del self.buffer[:need]
            if self.stage != "messages":
                out += message
                self._advance(message)
                continue
            kind = message[0]
            is_input = kind in INPUT_TYPES or (kind == 255 and message[1] == 0)
            self.messages += 1
            if is_input:
                result.input_seen = True
                if self.view_only:
                    result.dropped.append(NAMES.get(kind, str(kind)))
                    continue
            out += message
        if len(self.buffer) > MAX_CUT_TEXT + 64:
            raise RfbProtocolError("Client message too large.")
        result.forward = bytes(out)
        return result

    # --- framing ----------------------------------------------------------------------
    def _advance(self, message: bytes) -> None:
        if self.stage == "version":
            if not message.startswith(b"RFB 003.") or message[-1:] != b"\n":
                raise RfbProtocolError("Not an RFB client.")
            if message[8:11] not in (b"007", b"008"):
                raise RfbProtocolError("Only RFB 3.7 and 3.8 clients are supported.")
            self.stage = "security"
        elif self.stage == "security":
            if message[0] == SECURITY_NONE:
                self.stage = "client_init"
            elif message[0] == SECURITY_VNC_AUTH:
                self.stage = "vnc_auth"
            else:
                raise RfbProtocolError(f"Security type {message[0]} is not supported.")
        elif self.stage == "vnc_auth":
            self.stage = "client_init"
        elif self.stage == "client_init":
            self.stage = "messages"

    def _needed(self) -> int | None:
        """Length of the next complete unit, or None while it cannot be known yet."""
        stage = self.stage
        if stage == "version":
            return VERSION_LENGTH
        if stage in ("security", "client_init"):
            return 1
        if stage == "vnc_auth":
            return VNC_AUTH_RESPONSE
        buf = self.buffer
        if not buf:
            return None
        kind = buf[0]
        fixed = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10, 250: 4}
        if kind in fixed:
            return fixed[kind]
        if kind == 2:
            return None if len(buf) < 4 else 4 + 4 * struct.unpack_from(">H", buf, 2)[0]
        if kind == 6:
            if len(buf) < 8:
                return None
            length = abs(struct.unpack_from(">i", buf, 4)[0])
            if length > MAX_CUT_TEXT:
                raise RfbProtocolError("Clipboard text too large.")
            return 8 + length
        if kind == 248:
            return None if len(buf) < 9 else 9 + buf[8]
        if kind == 251:
            return None if len(buf) < 8 else 8 + 16 * buf[6]
        if kind == 255:
            if len(buf) < 2:
                return None
            if buf[1] == 0:
                return 12
            if buf[1] == 1:
                if len(buf) < 4:
                    return None
                operation = struct.unpack_from(">H", buf, 2)[0]
                if operation in (0, 1):
                    return 4
                if operation == 2:
                    return 10
            raise RfbProtocolError("Unknown QEMU client message.")
        raise RfbProtocolError(f"Unknown client message type {kind}.")
