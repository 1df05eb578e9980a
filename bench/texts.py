"""What showing stored messages in the reader's language costs (portal.texts).

A stored message is English; a Chinese reader's page and live socket read its format and
arguments back out of it and render the translation. Measured here, in one process:

- ``first_reading``: one message in Chinese read back for the first time (the cache of
  readings cleared before each), for a mix of messages made from every format (sample
  arguments) and engine words that match no format;
- ``localize``: the same mix as pages and sockets meet it, repeats read from the cache;
- baseline ``gettext``: translating one plain msgid (what a template's ``{% translate %}``
  costs), the least a translated message can cost;
- ``event table``: the 50-row event table partial rendered in Chinese vs in English
  (English skips the parsing): the cost a page pays.

``.venv/bin/python bench/texts.py --rounds 20000`` prints one JSON document. Needs no
database or Redis (settings are loaded; nothing is queried).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.template.loader import render_to_string  # noqa: E402
from django.utils import timezone, translation  # noqa: E402

from bench._harness import percentiles  # noqa: E402
from portal import texts  # noqa: E402

ENGINE_WORDS = [
    "internal error: process exited while connecting to monitor: qemu-system-x86_64: "
    "-vnc 127.0.0.1:5901: Failed to find an available port",
    'pods "web-7d9c" is forbidden: exceeded quota: compute-resources',
]


def sample_messages() -> list[str]:
    """One message per format, with plausible arguments, plus engine words."""
    messages = []
    for msgid in texts.formats():
        names = texts.PLACEHOLDER.findall(msgid)
        args = {name: ("Running" if name == "phase" else f"{name}-7") for name in names}
        messages.append(msgid % args if args else msgid)
    return messages + ENGINE_WORDS


def timed(fn, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def per_call_us(samples: list[float]) -> dict:
    """Percentiles in microseconds (``percentiles`` speaks milliseconds)."""
    p = percentiles([s * 1000 for s in samples])
    return {k.replace("_ms", "_us"): v for k, v in p.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--pages", type=int, default=200)
    args = parser.parse_args()

    messages = sample_messages()
    texts.catalog()  # built once per process
    state = {"i": 0}

    def one_localize():
        state["i"] += 1
        texts.localize(messages[state["i"] % len(messages)])

    def one_first_reading():
        texts._localized.cache_clear()  # every reading is a first one
        one_localize()

    def one_gettext():
        state["i"] += 1
        translation.gettext("Virtual machines")

    with translation.override("zh-hans"):
        first = timed(one_first_reading, args.rounds)
        localize = timed(one_localize, args.rounds)
        gettext = timed(one_gettext, args.rounds)

    from monitoring.models import Event
    from tenants.models import Tenant

    tenant = Tenant(name="Acme", slug="acme")
    now = timezone.now()
    events = [
        Event(
            tenant=tenant,
            type="Normal",
            reason="Running",
            message=messages[i % len(messages)],
            kind="vm",
            name=f"web{i}",
            count=1,
            first_seen=now,
            last_seen=now,
        )
        for i in range(50)
    ]

    def render():
        render_to_string(
            "monitoring/_event_table.html",
            {"events": events, "tenant": tenant, "table_id": "t", "testid": "t"},
        )

    pages = {}
    for language in ("en", "zh-hans"):
        with translation.override(language):
            render()  # templates compiled
            pages[language] = timed(render, args.pages)

    result = {
        "formats": len(texts.formats()),
        "messages": len(messages),
        "first_reading_us": per_call_us(first),
        "localize_us": per_call_us(localize),
        "baseline_gettext_us": per_call_us(gettext),
        "first_reading_over_gettext_p50": round(
            per_call_us(first)["p50_us"] / per_call_us(gettext)["p50_us"], 1
        ),
        "localize_over_gettext_p50": round(
            per_call_us(localize)["p50_us"] / per_call_us(gettext)["p50_us"], 1
        ),
        "event_table_50_rows_ms": {lang: percentiles(samples) for lang, samples in pages.items()},
        "event_table_zh_over_en_p50": round(
            percentiles(pages["zh-hans"])["p50_ms"] / percentiles(pages["en"])["p50_ms"], 2
        ),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
