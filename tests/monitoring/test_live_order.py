"""Live messages reach a stream's subscribers in the order of their seqs, also when
several publishers send to the stream at once: the script that numbers a message
publishes it in the same step (``monitoring.live._broadcast_in_script``). A browser
that sees a seq out of order resyncs, so reordering costs every open page a resync."""

from __future__ import annotations

import threading

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from monitoring import live
from monitoring.choices import LiveMessageType
from monitoring.groups import tenant_group

pytestmark = pytest.mark.unit

STREAM = tenant_group("order-test")


def test_concurrent_publishers_deliver_each_streams_messages_in_seq_order():
    layer = get_channel_layer()
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    client = live.redis_client()
    client.delete(live.SEQ_KEY.format(group=STREAM))
    subscriber = client.pubsub()
    subscriber.subscribe(f"{prefix}__group__{STREAM}")
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"

    def publish(publisher: int) -> None:
        for n in range(100):
            data = {"message": f"{publisher}-{n}"}
            live.broadcast_many([([STREAM], LiveMessageType.EVENT, data)])

    threads = [threading.Thread(target=publish, args=(p,)) for p in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    received = []
    while len(received) < 400:
        raw = subscriber.get_message(timeout=5)
        assert raw is not None, f"only {len(received)} of 400 messages arrived"
        received.append(layer.deserialize(raw["data"]))
    subscriber.close()

    assert [m["message"]["seq"] for m in received] == list(range(1, 401))
    # Each is the message the layer itself would have sent.
    first = received[0]
    assert first["type"] == live.LIVE_MESSAGE
    assert set(first["message"]) == {"type", "stream", "seq", "data"}
    assert first["message"]["stream"] == STREAM
    assert first["message"]["type"] == LiveMessageType.EVENT
    per_publisher = {}
    for m in received:
        publisher, n = m["message"]["data"]["message"].split("-")
        per_publisher.setdefault(publisher, []).append(int(n))
    assert per_publisher == {str(p): list(range(100)) for p in range(4)}
