"""Provision requests, coalesced: a new VM reaches the workers with one Redis call instead
of a Celery message of its own.

Sending a Celery message costs the web process more CPU than any other step after the
commit (building, routing and serialising it: about a tenth of a create,
bench/README.md, ``accept_cpu``), and a create sent one for its ``vm_provision``. Now the
create appends its VM's id to a Redis list and, in the same script, arms a flag; only
the request that armed the flag sends a message, ``vm_provision_dispatch``. That task,
on a worker, takes the ids in batches and sends each VM its own ``vm_provision`` (so the
provisions still run side by side on every worker process, each routed to its host's
queue), and the script that finds the list empty disarms the flag in the same step: an
id appended after that arms it again, so no id waits for a dispatch that has ended.

The dispatch goes to the ``default`` queue, not ``libvirt``: it needs no hypervisor,
and behind a backlog of provisions on ``libvirt`` each VM would queue twice (for the
dispatch, then for its provision).

Under load most creates find the flag armed and send no message; at rest every create
arms it and sends one, as before, after the script's round trip (about 0.2 ms more).

What is lost, and what brings it back:
- the dispatch message cannot be sent (broker unreachable): the create that armed the
  flag disarms it again (only if the flag is still its own) before the error goes on,
  so the next create sends one;
- a dispatch is lost after it was sent (its message dropped by a broker restart) or
  after it took ids (its worker killed): the flag expires ``ARMED_SECONDS`` after the
  dispatch last took ids, and the next create arms it again; the ids a killed dispatch
  had taken (``BATCH`` at most) are lost from the list, and the reconciler drives those
  VMs again once they have been Pending for ``ISOTOPE_STUCK_SECONDS``, as it does for a
  provision whose worker was killed.
With the app's ``task_always_eager`` (no worker, no queue) the provision runs at once,
as every other task does then.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from monitoring.live import redis_client, redis_script

logger = logging.getLogger(__name__)

WAITING = "isotope:provision:waiting"
ARMED = "isotope:provision:armed"
# How long an armed flag outlives the last sign of its dispatch: how long a lost
# dispatch can hold the creates after it.
ARMED_SECONDS = 10
# Ids a dispatch takes per round trip (and so at most what a killed one loses).
BATCH = 25

# KEYS: waiting, armed; ARGV: armed seconds, token, ids... → 1 when this call armed the
# flag (with its token).
_APPEND = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
"""
# KEYS: armed; ARGV: token → the flag deleted if it is still that token's.
_DISARM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# KEYS: waiting, armed; ARGV: batch, armed seconds → the ids taken; none: disarmed.
_TAKE = """
local ids = redis.call('LPOP', KEYS[1], ARGV[1])
if ids then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return ids
end
redis.call('DEL', KEYS[2])
return {}
"""


def provision_request(*vm_ids: int) -> None:
    """Hand VMs committed Pending to the workers: their ids join the waiting list, and a
    dispatch is sent unless one is already on its way. Call it on commit."""
    from compute.tasks import libvirt as tasks

    if not vm_ids:
        return
    if tasks.vm_provision.app.conf.task_always_eager:
        for vm_id in vm_ids:
            tasks.vm_provision.delay(vm_id)
        return
    token = requests_append(vm_ids)
    if token:
        try:
            tasks.vm_provision_dispatch.delay()
        except BaseException:
            # No dispatch is coming for this flag: the next create must send one.
            redis_script(_DISARM)(keys=[ARMED], args=[token])
            raise


def requests_append(vm_ids) -> str:
    """Append ids to the waiting list. When this call armed the flag, its token (the
    caller then sends the dispatch); else ``""``."""
    token = secrets.token_hex(8)
    armed = redis_script(_APPEND)(keys=[WAITING, ARMED], args=[ARMED_SECONDS, token, *vm_ids])
    return token if armed else ""


def provision_dispatch(send: Callable[[int], None]) -> int:
    """On a worker: ``send`` every waiting id, in the order they came, until none is
    left, then disarm. Returns how many were sent. An id whose ``send`` failed, and the
    ids taken after it, go back to the front of the list before the error is raised
    (the flag stays armed: the task retries)."""
    sent = 0
    take = redis_script(_TAKE)
    while True:
        ids = [int(vm_id) for vm_id in take(keys=[WAITING, ARMED], args=[BATCH, ARMED_SECONDS])]
        if not ids:
            return sent
        for index, vm_id in enumerate(ids):
            try:
                send(vm_id)
            except Exception:
                _put_back(ids[index:])
                raise
            sent += 1


def _put_back(vm_ids: list[int]) -> None:
    redis_client().lpush(WAITING, *reversed(vm_ids))
    logger.warning("provision dispatch failed; %d VM ids put back", len(vm_ids))


def provision_requests_clear() -> None:
    """Forget every waiting id and the flag (tests and benchmarks, with the queues they
    purge: a flag left armed by a run without a worker would hold the next run's ids)."""
    redis_client().delete(WAITING, ARMED)
