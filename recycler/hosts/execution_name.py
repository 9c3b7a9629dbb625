"""The DurableExecutionName a recycle of one service is started with.

Standard library only (through recycler.model.request), so that
``python3 durable_function.py --cluster … --service …`` prints a name on any
machine with Python, without boto3 or the durable SDK installed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from recycler.model.errors import ConfigError
from recycler.model.fleet import parse_fleet_event
from recycler.model.request import RUN_KEY, RUN_KEY_RULE, parse_event

EXECUTION_NAME_MAX = 64


def durable_execution_name(cluster: str, service: str, run_key: str | None = None) -> str:
    """The DurableExecutionName to start a recycle of this service with.

    Lambda starts at most one execution per name (account and region, for as
    long as the execution is retained), so every start of a recycle for the
    same service and ``run_key`` gets the same execution, never a second run.
    The name is ``recycle-<cluster>-<service>-<hash>[-<run_key>]``: the hash of
    the exact (cluster, service) pair keeps names apart that would otherwise
    read the same ("a-b"/"c" and "a"/"b-c"), and lets long names be cut to 64
    characters. Use a run key (for example the date) to recycle the same
    service again before the previous execution's retention period ends.
    """
    request = parse_event({"cluster_name": cluster, "service_name": service})
    cluster_name, service_name = request.cluster_name, request.service_name
    if run_key is not None and not RUN_KEY.fullmatch(run_key):
        raise ConfigError("run_key", RUN_KEY_RULE)
    digest = hashlib.sha256(f"{cluster_name}/{service_name}".encode()).hexdigest()[:10]
    tail = f"-{digest}" + (f"-{run_key}" if run_key else "")
    head = f"recycle-{cluster_name}-{service_name}"[: EXECUTION_NAME_MAX - len(tail)]
    return head + tail


def durable_fleet_execution_name(
    cluster: str,
    *,
    services: Sequence[str] = (),
    service_tags: Mapping[str, str] | None = None,
    run_key: str | None = None,
) -> str:
    """The DurableExecutionName to start one fleet run with: one execution per (cluster, selection, run_key).

    ``fleet-<cluster>-<hash>[-<run_key>]``: the hash is of the cluster and the selection (the service names
    sorted, or the tags), so the same fleet started twice is one execution, and another selection another.
    """
    event: dict[str, object] = {"cluster_name": cluster}
    if service_tags:
        event["service_tags"] = dict(service_tags)
    else:
        event["services"] = list(services)
    request = parse_fleet_event(event)
    if run_key is not None and not RUN_KEY.fullmatch(run_key):
        raise ConfigError("run_key", RUN_KEY_RULE)
    tail = f"-{request.digest()}" + (f"-{run_key}" if run_key else "")
    return f"fleet-{request.template.cluster_name}"[: EXECUTION_NAME_MAX - len(tail)] + tail
