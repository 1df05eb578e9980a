"""Stored messages of pools, autoscalers, workloads, namespaces and quotas (portal.texts):
a Chinese reader sees them in Chinese, nested reasons, phase words, warm modes, metrics
and quota resources included, and each message reads back to the format it was made
from (not to a shorter one that also fits)."""

from __future__ import annotations

import pytest
from django.utils import translation

import usage.texts as usage_texts
from compute.texts import clusters, pools, workloads
from portal import texts

pytestmark = pytest.mark.unit


def chinese(message: str) -> str:
    with translation.override("zh-hans"):
        return texts.localize(message)


def test_a_pool_status_with_warm_members_and_a_note_reads_back_whole():
    note = pools.NO_QUOTA_FOR_WARM % {"quota_resource": "vms"}
    message = pools.STATUS_READY_WARM_NOTE % {
        "ready": 2,
        "replicas": 3,
        "warm": 0,
        "wanted": 1,
        "note": note,
    }
    assert message == (
        "2 of 3 members ready. 0 of 1 warm members. No quota left for warm members (vms)."
    )
    assert texts.parse(message)[0] == pools.STATUS_READY_WARM_NOTE
    shown = chinese(message)
    assert "members" not in shown and "预热成员" in shown and "虚拟机" in shown


def test_an_autoscaler_decision_limited_twice_is_chinese_to_the_innermost_measurement():
    measured = pools.MEASURED_CPU % {"utilisation": "90%", "target": "60%"}
    decision = pools.SCALE_UP % {"measured": measured, "current": 2, "desired": 5}
    decision = pools.LIMITED_BY_STEP % {"decision": decision, "limited": 4}
    decision = pools.LIMITED_BY_QUOTA % {
        "decision": decision,
        "more": 1,
        "quota_resource": "memory",
    }
    assert decision == (
        "CPU utilisation 90% (target 60%) above target: 2 → 5. Limited to 4 (step limit). "
        "The quota holds 1 more (memory is the limit)."
    )
    shown = chinese(decision)
    assert "CPU 利用率 90%" in shown and "步长限制" in shown and "内存" in shown
    assert "target" not in shown and "Limited" not in shown


def test_a_warm_mode_and_an_autoscaler_metric_are_shown_in_the_readers_words():
    changed = pools.WARM_CHANGED % {"warm": 2, "warm_mode": "paused", "actor": "alice"}
    summary = pools.AUTOSCALER_SUMMARY % {
        "low": 1,
        "high": 5,
        "pool": "web",
        "target": "60%",
        "autoscaler_metric": "cpu",
        "window": 300,
    }
    assert summary == "1-5 replicas of web at 60% cpu, scale-down window 300 s."
    assert "paused" not in chinese(changed)
    assert "CPU 利用率" in chinese(summary) and "web" in chinese(summary)


def test_a_pod_that_ended_shows_the_readers_phase_word_and_the_clusters_reason():
    message = workloads.POD_ENDED_BECAUSE % {"phase": "Failed", "reason": "OOMKilled"}
    with translation.override("zh-hans"):
        failed = translation.gettext("Failed")
    shown = chinese(message)
    assert failed in shown and "OOMKilled" in shown and "pod ended" not in shown


def test_joined_quota_lines_are_each_translated():
    lines = [
        usage_texts.CROSSED
        % {
            "quota_resource": label,
            "used": used,
            "limit": limit,
            "unit": unit,
            "percent": percent,
            "level": level,
        }
        for label, used, limit, unit, percent, level in (
            ("CPU", "8", "10", "cores", "80 %", "80 %"),
            ("Virtual machines", "19", "20", "VMs", "95 %", "95 %"),
        )
    ]
    message = usage_texts.NEARLY_EXHAUSTED % {"crossed": "; ".join(lines)}
    assert message == (
        "Quota nearly exhausted. CPU: 8 of 10 cores (80 %, past 80 %); "
        "Virtual machines: 19 of 20 VMs (95 %, past 95 %)."
    )
    shown = chinese(message)
    assert "past" not in shown and "Virtual machines" not in shown


def test_a_drift_repair_names_the_kubernetes_objects_as_written():
    message = clusters.DRIFT_RECREATED_REVERTED % {
        "namespace": "isotope-acme",
        "cluster": "kind",
        "created": "ResourceQuota",
        "repaired": "LimitRange, NetworkPolicy",
    }
    shown = chinese(message)
    assert "outside the portal" not in shown and "LimitRange, NetworkPolicy" in shown


@pytest.mark.parametrize("module", [pools, workloads, clusters, usage_texts])
def test_every_format_reads_back_to_itself(module):
    wrong = {}
    for name, msgid in vars(module).items():
        if not name.isupper() or not isinstance(msgid, str):
            continue
        args = {p: f"<{p}-{i}>" for i, p in enumerate(texts.PLACEHOLDER.findall(msgid))}
        message = msgid % args
        found = texts.parse(message)
        if found is None or found[0] != msgid:
            wrong[name] = found and found[0]
    assert wrong == {}
