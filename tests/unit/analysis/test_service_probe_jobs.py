"""The probe side of Services (``daemon.engine.probe_jobs``): what ``acknet probe`` connects to for a
``svc/NS/NAME`` destination, and how ``observe.probe.verdicts`` merges the attempts into the verdict
``check`` gives for the same pair (same from, to, Service port and protocol).

Uses the topology of test_service_reachability.py; no namespace is built.
"""

from __future__ import annotations

from collections import Counter

import pytest
from test_service_reachability import CLOUD, WORKLOADS

from acknet.analysis.reachability import ATTEMPTS_PER_BACKEND
from acknet.controllers.plan import plan
from acknet.controllers.state import Plan
from acknet.daemon.engine import probe_jobs
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.observe.probe import NO_ADDRESS, ProbeJob, ProbeResult, run_probes, verdicts


@pytest.fixture(scope="module")
def planned() -> Plan:
    return plan(build_resources([Source("svc.yaml", CLOUD + WORKLOADS)]))


def service_ip(planned: Plan, name: str) -> str:
    return next(str(s.cluster_ip) for s in planned.services if s.name == name)


def node_ips(planned: Plan) -> list[str]:
    return sorted(str(i.primary_ip) for i in planned.instances if i.is_node)


def test_in_cluster_clients_connect_to_the_cluster_ip_often_enough(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["default/client"], ["svc/default/web"], None)
    assert Counter((j.ip, j.port, j.verdict_port) for j in jobs) == {
        (service_ip(planned, "web"), 80, 80): ATTEMPTS_PER_BACKEND * 3
    }
    job = jobs[0]
    assert (job.source, job.target, job.protocol, job.http, job.source_ip) == (
        "default/client",
        "svc/default/web",
        "TCP",
        True,  # every backend is the built-in server on its targetPort: it must answer HTTP
        next(str(p.ip) for p in planned.pods if p.name == "client"),
    )


def test_outside_clients_use_the_node_port_of_every_node(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["ecs/ok"], ["svc/default/web-np"], None)
    assert Counter((j.ip, j.port, j.verdict_port) for j in jobs) == {
        (ip, 30080, 80): ATTEMPTS_PER_BACKEND * 3 for ip in node_ips(planned)
    }


def test_outside_clients_without_a_node_port_try_the_cluster_ip(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["ecs/ok"], ["svc/default/web"], None)
    assert {(j.ip, j.port) for j in jobs} == {(service_ip(planned, "web"), 80)}


def test_headless_is_one_connection_per_endpoint_address(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["default/client"], ["svc/default/web-headless"], None)
    pods = {p.name: str(p.ip) for p in planned.pods}
    assert sorted((j.ip, j.port, j.verdict_port) for j in jobs) == sorted(
        [(pods["web-a"], 8080, 80), (pods["web-b"], 8081, 80), (pods["web-c"], 8080, 80)]
    )


def test_no_endpoints_still_probes_the_cluster_ip(planned: Plan) -> None:
    (a, b) = probe_jobs("t", planned, ["default/client"], ["svc/default/empty"], None)
    assert a == b and (a.ip, a.port) == (service_ip(planned, "empty"), 80)


def test_svc_kind_and_a_port_that_is_no_service_port(planned: Plan) -> None:
    jobs = probe_jobs("t", planned, ["default/client"], ["svc"], ["8080"])
    assert {j.target for j in jobs} >= {"svc/default/web", "svc/default/web-np", "svc/default/manual"}
    assert all(j.verdict_port == 8080 for j in jobs)


def test_attempts_through_nodes_merge_into_one_verdict_on_the_service_port() -> None:
    def attempt(ip: str, ok: bool) -> ProbeResult:
        job = ProbeJob("ns", ip, 30080, source="ecs/ok", target="svc/d/web", label_port=80)
        return ProbeResult(job, ok, False)

    merged = verdicts([attempt("192.168.0.1", True), attempt("192.168.0.2", False)])["verdicts"]
    assert merged == [
        {
            "from": "ecs/ok",
            "to": "svc/d/web",
            "port": 80,
            "protocol": "TCP",
            "allowed": False,
            "partial": True,
        }
    ]


def test_a_job_without_an_address_is_not_allowed_and_sends_nothing() -> None:
    (result,) = run_probes([ProbeJob("no-such-netns", "", 80, source="a/b", target="svc/a/h")])
    assert (result.allowed, result.error) == (False, NO_ADDRESS)
