"""A failed Pulumi update is reported by the resource's own error, not by the engine's summary.

The engine's events, in the order it sends them: the resource's diagnostic (why it failed), the
operation's failure, then the stack's "update failed". The journal keeps the first failure only."""

from __future__ import annotations

from typing import Any

from pulumi.automation import events

from hzcloud.executors.pulumi import _rank, _translate
from hzcloud.outcome import Event, Failure

STACK = "urn:pulumi:lab::hzcloud-platform::pulumi:pulumi:Stack::hzcloud-platform-lab"
DEPLOY = "urn:pulumi:lab::hzcloud-platform::kubernetes:apps/v1:Deployment::coredns"


def _diag(message: str, urn: str) -> dict[str, Any]:
    return {
        "sequence": 1,
        "timestamp": 1,
        "diagnosticEvent": {"message": message, "color": "never", "severity": "error", "urn": urn},
    }


def _op_failed() -> dict[str, Any]:
    meta = {"op": "update", "urn": DEPLOY, "type": "kubernetes:apps/v1:Deployment", "provider": ""}
    return {
        "sequence": 2,
        "timestamp": 1,
        "resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1},
    }


def test_the_resources_own_error_leads() -> None:
    seen: list[Event] = []
    failures: list[Failure] = []
    why = "Deployment coredns: the server is currently unable to handle the request"
    for data in (_diag(why, DEPLOY), _op_failed(), _diag("update failed", STACK)):
        _translate("platform", events.EngineEvent.from_json(data), seen.append, failures)
    assert len(failures) == 3
    failures.sort(key=_rank)
    assert failures[0].message == why and failures[0].task == DEPLOY
    assert failures[-1].message == "update failed"
    assert [e.kind for e in seen] == ["failed", "failed"]


def test_the_summary_is_kept_when_it_is_all_there_is() -> None:
    failures: list[Failure] = []
    _translate(
        "platform",
        events.EngineEvent.from_json(_diag("update failed", STACK)),
        lambda e: None,
        failures,
    )
    assert sorted(failures, key=_rank)[0].message == "update failed"
