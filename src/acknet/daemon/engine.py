"""The reconcile loop of one emulation: render -> diff -> apply -> observe, one change at a time.

The engine holds what it last made real (plan, kernel plan, security-group tables, built-in
endpoints, processes) and moves the kernel from that to what the newest files ask for. Every step is
delegated to the layers below; the engine only orders them:

1. plan (controllers) and render (topology, security groups, workloads);
2. end what goes away while its namespace still exists (processes, built-in sockets);
3. apply the topology diff; load changed security-group tables whole;
4. start what is new (resolver files, built-in sockets, processes);
5. observe readiness until every running pod is ready.

A restarted daemon has nothing in memory: it re-applies the newest revision against no previous
plan (apply is idempotent), removes namespaces of its emulation that the plan no longer has, and
adopts the built-in server and processes it finds running.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acknet.analysis.endpoints import Endpoint as AnalysisEndpoint
from acknet.analysis.endpoints import EndpointIndex, resolve
from acknet.analysis.reachability import parse_port
from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan, PlannedPod
from acknet.dataplane.apply import builtin_server, nftables, processes
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation, remove_namespace
from acknet.dataplane.apply.nsutil import NetnsSwitcher
from acknet.dataplane.render import names
from acknet.dataplane.render import policy as policy_render
from acknet.dataplane.render.dns import render_dns_records
from acknet.dataplane.render.kernel import KernelPlan
from acknet.dataplane.render.kube_proxy import render_kube_proxy
from acknet.dataplane.render.kube_proxy import replace_script as kube_proxy_replace_script
from acknet.dataplane.render.security_group import (
    render_exclusive_pod_security_groups,
    render_security_groups,
    replace_script,
    table_name,
)
from acknet.dataplane.render.topology import render_topology
from acknet.dataplane.render.workloads import (
    Endpoint,
    Process,
    Workloads,
    pod_spec,
    render_workloads,
    speaks_dns,
)
from acknet.errors import AcknetError, DataplaneError, NotFound
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.model.resources import Resources
from acknet.observe.probe import ProbeJob
from acknet.observe.readiness import ReadinessCheck, run_check
from acknet.store.state import StateStore

READY_TIMEOUT = 120.0  # seconds `up` waits for readiness probes before reporting the pods not ready
NO_PROBE_PATIENCE = 10.0  # seconds `up` waits for the process of a pod without a readiness probe


@dataclass
class Status:
    phase: str = "idle"  # idle | applying | ready | failed | stopping
    stage: str = ""
    done: int = 0
    total: int = 6
    revision: int = 0
    error: str | None = None
    pending: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    changed: dict[str, int] = field(default_factory=dict)


class Emulation:
    """One named emulation and the state folder that records it."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = names.check_emulation(name)
        self.folder = folder
        self.store = StateStore(folder)
        self.pid_dir = folder / "pids"
        self.log_dir = folder / "logs"
        self.control = folder / "builtin.sock"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.status = Status()
        self._newest = 0  # the newest revision submitted
        self.plan: Plan | None = None
        self.kernel: KernelPlan | None = None
        self.sg_tables: dict[str, str] = {}
        self.proxy_tables: dict[str, str] = {}
        self.dns_zones: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self.policy_tables: dict[str, str] = {}  # node namespace -> the policy table text loaded there
        self.endpoints: dict[tuple[str, str, int, str], Endpoint] = {}
        self.processes: dict[str, tuple[Process, int]] = {}
        self.ready: dict[str, bool] = {}
        self.retired: set[str] = set(json.loads(self.store.get_setting("retired") or "[]"))
        self.switcher = NetnsSwitcher()
        self.builtin: builtin_server.BuiltinServerClient | None = None
        self.builtin_pid: int | None = None
        self.resources: Resources | None = None
        self.on_change: Callable[[], None] | None = None

    # -- life cycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt and converge to the newest revision, then supervise in the background."""
        self._ensure_builtin_server()
        latest = self.store.latest()
        if latest is not None:
            # Plan against what the last daemon planned, so names and addresses stay where its pods
            # are (a plan from scratch may hand a replaced pod's address to another).
            self.plan = latest.plan
            self.submit(latest.sources, record=False)
        threading.Thread(target=self._supervise, name="supervise", daemon=True).start()

    def _ensure_builtin_server(self) -> None:
        client = builtin_server.BuiltinServerClient(self.control)
        try:
            reply = client.ping()
            self.builtin_pid = int(reply.get("pid", 0)) or None
            for ep in client.list():
                self.endpoints[ep.key] = ep  # type: ignore[assignment]
        except AcknetError:
            self.control.unlink(missing_ok=True)
            proc = builtin_server.start_builtin_server(self.control, log_path=self.log_dir / "builtin.log")
            self.builtin_pid = proc.pid
            (self.folder / "builtin.pid").write_text(f"{proc.pid}\n")
        self.builtin = client

    def submit(self, sources: Sequence[Source], record: bool = True) -> int:
        """Validates the files and starts converging to them in the background; returns the revision."""
        resources = build_resources(sources)  # InvalidInput: nothing is stored or applied
        if record:
            # The files declare these bare pods again: applying them recreates what was deleted.
            declared = {f"{ns}/{n}" for objs in resources.kube.values() for ns, n in objs.pods}
            if self.retired & declared:
                self.retired -= declared
                self.store.set_setting("retired", json.dumps(sorted(self.retired)))
        latest = self.store.latest()
        revision = self.store.add_revision(sources) if record or latest is None else latest.id
        self.status = Status(phase="applying", stage="queued", revision=revision)
        self._newest = max(self._newest, revision)
        threading.Thread(target=self._reconcile_safely, args=(resources, revision), daemon=True).start()
        return revision

    def reconcile_again(self) -> None:
        """Re-plans the current files (after a pod was retired): a Deployment replaces its pod."""
        if self.resources is not None:
            revision = self.status.revision
            threading.Thread(
                target=self._reconcile_safely, args=(self.resources, revision), daemon=True
            ).start()

    def _reconcile_safely(self, resources: Resources, revision: int) -> None:
        with self._lock:
            if revision < self._newest:
                return  # the lock is not FIFO: a newer revision got here first, its files win
            try:
                self._reconcile(resources, revision)
            except AcknetError as exc:
                self._set(phase="failed", error=str(exc), revision=revision)
            except Exception as exc:  # the daemon reports, it does not die
                self._set(
                    phase="failed",
                    error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                    revision=revision,
                )

    def _set(self, **changes: Any) -> None:
        self.status = dataclasses.replace(self.status, **changes)

    def _stage(self, stage: str, done: int) -> None:
        self._set(stage=stage, done=done)

    # -- reconcile ------------------------------------------------------------------------------------
    def _reconcile(self, resources: Resources, revision: int) -> None:
        self._set(phase="applying", stage="planning", done=0, revision=revision, error=None)
        planned = make_plan(resources, previous=self.plan, retired=frozenset(self.retired))
        kernel = render_topology(planned, self.name)
        tables = {
            names.ecs_netns(self.name, inst): text
            for inst, text in render_security_groups(planned, self.name).items()
        }
        for key, text in render_exclusive_pod_security_groups(planned, self.name).items():
            namespace, _, pod = key.partition("/")
            tables[names.pod_netns(self.name, namespace, pod)] = text
        work = render_workloads(planned, self.name)
        adopting = self.kernel is None

        self._stage("stopping removed workloads", 1)
        self._stop_removed(work)

        self._stage("building namespaces, links and routes", 2)
        try:
            diff = apply_kernel_plan(kernel, self.kernel)
        except DataplaneError:
            if adopting:
                raise
            # The diff's removals are done by now. What failed is an add that met the kernel in
            # another state than the last plan says: a pod's namespace deleted with it takes the peer
            # ends of its veths along (an exclusive ENI's VRouter port), and apply's ifindex cache
            # still holds them. Ensuring the whole plan from what the kernel has converges.
            diff = apply_kernel_plan(kernel, None)
        if adopting:
            wanted = {ns.name for ns in kernel.namespaces}
            for stray in list_netns(names.netns_prefix(self.name)):
                if stray not in wanted:
                    remove_namespace(stray)
        self.kernel = kernel

        self._stage("loading security groups", 3)
        sg_changes = self._load_security_groups(planned, tables)
        # Before the workloads start: a new pod is under its policies before it can answer anyone.
        policy_changes = self._load_policies(planned, kernel)
        proxy_changes = self._load_kube_proxy(planned)
        self._load_dns(planned)

        self._stage("starting workloads", 4)
        self._start_new(work)
        self.plan, self.resources = planned, resources
        self.store.set_plan(revision, planned)

        self._stage("waiting for readiness", 5)
        pending = [f"{p.key}: {p.reason}" for p in planned.pods if p.phase == "Pending"]
        not_ready = self._wait_ready(planned)
        self._set(
            phase="ready",
            revision=revision,  # a newer submit may have replaced the status meanwhile: not ready yet
            stage="done",
            done=6,
            pending=pending,
            not_ready=not_ready,
            changed={
                "kernel objects": diff.count(),
                "security group tables": sg_changes,
                "policy tables": policy_changes,
                "kube-proxy tables": proxy_changes,
            },
        )
        if self.on_change is not None:
            self.on_change()

    def _stop_removed(self, work: Workloads) -> None:
        wanted_labels = {p.label: p for p in work.processes}
        for label, (proc, pid) in list(self.processes.items()):
            if wanted_labels.get(label) != proc:
                processes.stop(pid, proc.netns)
                (self.pid_dir / f"{label}.pid").unlink(missing_ok=True)
                del self.processes[label]
        wanted = {e.key: e for e in work.endpoints}
        gone = [e for k, e in self.endpoints.items() if wanted.get(k) != e]
        if gone and self.builtin is not None:
            self.builtin.remove(endpoints=[_builtin(e) for e in gone])
        for e in gone:
            self.endpoints.pop(e.key, None)

    @staticmethod
    def _replace_tables(
        wanted: dict[str, str], loaded: dict[str, str], table: str, script: Callable[[str], str]
    ) -> int:
        """Namespace -> table text: a table is replaced whole, in one transaction, when its text changed
        (one owner per table). Namespaces that went away took their tables along."""
        changes = 0
        for netns, text in sorted(wanted.items()):
            if loaded.get(netns) != text:
                nftables.load_script(netns, script(text), table)
                loaded[netns] = text
                changes += 1
        for netns in set(loaded) - wanted.keys():
            del loaded[netns]
        return changes

    def _load_security_groups(self, planned: Plan, wanted: dict[str, str]) -> int:
        return self._replace_tables(
            wanted, self.sg_tables, table_name(self.name), lambda text: replace_script(text, self.name)
        )

    def _load_kube_proxy(self, planned: Plan) -> int:
        """kube-proxy's table in every node (Services, NodePorts), before workloads start answering."""
        wanted = {
            names.ecs_netns(self.name, node.name): render_kube_proxy(
                planned, node.name, node.cluster, self.name
            )
            for node in planned.instances
            if node.cluster is not None
        }
        return self._replace_tables(wanted, self.proxy_tables, "kube-proxy", kube_proxy_replace_script)

    def _load_dns(self, planned: Plan) -> None:
        """The cluster DNS records the CoreDNS pods' built-in port 53 answers from."""
        zones = {cluster: render_dns_records(planned, cluster) for cluster in planned.resources.clusters}
        if zones != self.dns_zones and self.builtin is not None:
            self.builtin.set_dns_records(zones)
            self.dns_zones = zones

    def _load_policies(self, planned: Plan, kernel: KernelPlan) -> int:
        """Loads each node's policy table when its text changed: set element edits when only elements
        changed (pod churn, labels), else the whole table in one transaction. A node whose cluster no
        longer has network policy loses its table."""
        wanted = {
            names.ecs_netns(self.name, node): text
            for node, text in policy_render.render_policies(planned, self.name).items()
        }
        table = policy_render.table_name(self.name)
        changes = 0
        for netns, text in sorted(wanted.items()):
            old = self.policy_tables.get(netns)
            if old == text:
                continue
            edits = policy_render.set_element_changes(old, text) if old is not None else None
            if edits:
                try:
                    nftables.load_script(netns, edits, table)
                except DataplaneError:  # the kernel's table is not the one we last loaded
                    edits = None
            if not edits:
                nftables.load_script(netns, policy_render.replace_script(text, self.name), table)
            self.policy_tables[netns] = text
            changes += 1
        existing = {ns.name for ns in kernel.namespaces}
        for netns in set(self.policy_tables) - wanted.keys():
            if netns in existing:
                nftables.delete_table(netns, policy_render.TABLE_FAMILY, table)
            del self.policy_tables[netns]
        return changes

    def _start_new(self, work: Workloads) -> None:
        for netns, text in work.resolv_confs.items():
            processes.write_resolv_conf(netns, text)
        new = [e for e in work.endpoints if e.key not in self.endpoints]
        if new and self.builtin is not None:
            self.builtin.add([_builtin(e) for e in new])
        for e in new:
            self.endpoints[e.key] = e
        for proc in work.processes:
            if proc.label in self.processes:
                continue
            adopted = self._adopt(proc)
            pid = (
                adopted
                if adopted is not None
                else processes.start(
                    proc.netns, proc.argv, self.pid_dir, proc.label, self.log_dir / f"{proc.label}.log"
                ).pid
            )
            self.processes[proc.label] = (proc, pid)

    def _adopt(self, proc: Process) -> int | None:
        """A process a previous daemon started and that still runs in the right namespace."""
        path = self.pid_dir / f"{proc.label}.pid"
        try:
            pid_text, netns = path.read_text().split()[:2]
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        if netns == proc.netns and processes.alive(pid):
            return pid
        return None

    # -- readiness ------------------------------------------------------------------------------------
    def _checks(self, planned: Plan, pod: PlannedPod) -> list[ReadinessCheck]:
        spec = pod_spec(planned, pod)
        if spec is None or pod.ip is None or pod.node is None:
            return []
        node_netns = names.ecs_netns(self.name, pod.node)
        pod_netns = names.pod_netns(self.name, pod.namespace, pod.name)
        named = {p.name: p.container_port for c in spec.containers for p in c.ports if p.name}
        checks = []
        for c in spec.containers:
            probe = c.readiness_probe
            if probe is None:
                continue
            timeout = float(max(1, probe.timeout_seconds))
            action = probe.http_get or probe.tcp_socket
            if probe.exec is not None:
                checks.append(
                    ReadinessCheck(
                        "exec",
                        node_netns,
                        pod_netns,
                        pod.ip,
                        command=tuple(probe.exec.command),
                        timeout=timeout,
                    )
                )
            elif action is not None:
                port = action.port if isinstance(action.port, int) else named.get(action.port, 0)
                kind = "httpGet" if probe.http_get is not None else "tcpSocket"
                path = probe.http_get.path if probe.http_get is not None else "/"
                checks.append(
                    ReadinessCheck(kind, node_netns, pod_netns, pod.ip, port=port, path=path, timeout=timeout)
                )
        return checks

    def _probe_ready(self, planned: Plan, pod: PlannedPod) -> bool:
        label_prefix = f"pod.{pod.namespace}.{pod.name}."
        for label, (_, pid) in self.processes.items():
            if label.startswith(label_prefix) and not processes.alive(pid):
                return False
        return all(run_check(c, self.switcher)[0] for c in self._checks(planned, pod))

    @staticmethod
    def _patience(planned: Plan, pod: PlannedPod) -> float:
        """How long `up` waits for ``pod``: the time the kubelet gives a failing readiness probe
        (initialDelaySeconds + failureThreshold x periodSeconds), at most READY_TIMEOUT. A pod with no
        probe is only unready while its process is dead, which supervision handles after `up`."""
        spec = pod_spec(planned, pod)
        probes = [c.readiness_probe for c in spec.containers if c.readiness_probe] if spec else []
        if not probes:
            return NO_PROBE_PATIENCE
        # At least NO_PROBE_PATIENCE: on a busy host the first probes of a healthy pod can time out.
        return min(
            READY_TIMEOUT,
            max(
                NO_PROBE_PATIENCE,
                *(
                    p.initial_delay_seconds + max(1, p.failure_threshold) * max(1, p.period_seconds)
                    for p in probes
                ),
            ),
        )

    def _wait_ready(self, planned: Plan) -> list[str]:
        running = [p for p in planned.pods if p.phase == "Running"]
        start = time.monotonic()
        give_up = {p.key: start + self._patience(planned, p) for p in running}
        waiting = running
        failed: list[PlannedPod] = []
        while True:
            still = []
            for pod in waiting:
                ok = self._probe_ready(planned, pod)
                self.ready[pod.key] = ok
                if ok:
                    continue
                if time.monotonic() > give_up[pod.key]:
                    failed.append(pod)
                else:
                    still.append(pod)
            waiting = still
            if not waiting or self._stop.is_set():
                break
            time.sleep(0.5)
        for key in list(self.ready):
            if key not in {p.key for p in running}:
                del self.ready[key]
        return [p.key for p in failed + waiting]

    # -- supervision ----------------------------------------------------------------------------------
    def _supervise(self) -> None:
        """Dead processes: a Deployment's pod is replaced under a new name, a bare pod is restarted.
        Readiness is probed again every two seconds."""
        while not self._stop.wait(2.0):
            if self._lock.locked() or self.plan is None:
                continue
            replaced = False
            for label, (proc, pid) in list(self.processes.items()):
                if processes.alive(pid):
                    continue
                self.store.record("died", proc.owner, " ".join(proc.argv))
                pod = self._pod_of(proc.owner)
                if pod is not None and pod.owner is not None:
                    self.retire(pod.key, "its process died")
                    replaced = True
                else:
                    started = processes.start(
                        proc.netns, proc.argv, self.pid_dir, label, self.log_dir / f"{label}.log"
                    )
                    self.processes[label] = (proc, started.pid)
            if replaced:
                self.reconcile_again()
                continue
            plan = self.plan
            for pod in plan.pods:
                if pod.phase == "Running" and not self._stop.is_set():
                    self.ready[pod.key] = self._probe_ready(plan, pod)

    def _pod_of(self, owner: str) -> PlannedPod | None:
        if self.plan is None or not owner.startswith("pod/"):
            return None
        key = owner.removeprefix("pod/")
        return next((p for p in self.plan.pods if p.key == key), None)

    def retire(self, key: str, why: str) -> None:
        self.retired.add(key)
        self.store.set_setting("retired", json.dumps(sorted(self.retired)))
        self.store.record("retired", key, why)

    def delete_pod(self, namespace: str, name: str) -> str:
        """``acknet delete pod``: the pod goes; its Deployment, if any, makes a new one."""
        pod = self._pod_of(f"pod/{namespace}/{name}")
        if pod is None:
            raise NotFound(f"pod {namespace}/{name} does not exist")
        self.retire(pod.key, "deleted by acknet delete pod")
        self.status = dataclasses.replace(self.status, phase="applying", stage="queued")
        self.reconcile_again()
        return pod.key

    def teardown(self) -> list[str]:
        """Everything this emulation made: processes, the built-in server, namespaces, resolver files."""
        self._stop.set()
        with self._lock:
            self._set(phase="stopping", stage="tearing down")
            processes.stop_recorded(self.pid_dir)
            if self.builtin_pid is not None:
                builtin_server.stop_builtin_server(self.builtin_pid)
            removed = remove_emulation(self.name)
            processes.remove_netns_etc(names.netns_prefix(self.name))
            self.switcher.close()
            return removed


def _builtin(e: Endpoint) -> builtin_server.BuiltinEndpoint:
    return builtin_server.BuiltinEndpoint(e.netns, str(e.ip), e.port, e.protocol, dict(e.identity))


def probe_jobs(
    emulation: str,
    plan: Plan,
    sources: Sequence[str] | None,
    destinations: Sequence[str] | None,
    ports: Sequence[str] | None,
) -> list[ProbeJob]:
    """The probes ``acknet probe`` sends: every source to every destination and port, self-pairs left
    out; without ports, each destination's declared ones (DESIGN.md). Built-in TCP ports must also
    answer HTTP, so a connect that lands somewhere else does not count; CoreDNS's port 53 must answer
    a DNS query."""
    index = EndpointIndex.of(plan)
    pods = {f"{p.namespace}/{p.name}": p for p in plan.pods}
    srcs = resolve(index, list(sources) if sources else None, "from")
    dsts = resolve(index, list(destinations) if destinations else None, "to")
    wanted = [parse_port(p) for p in ports] if ports else None
    jobs = []
    for src in srcs:
        netns = _endpoint_netns(emulation, src)
        for dst in dsts:
            if dst.name == src.name:
                continue
            for port, protocol in wanted if wanted is not None else dst.ports:
                pod = pods.get(dst.name)
                dns = pod is not None and speaks_dns(pod, port)
                builtin = protocol == "TCP" and not dst.runs_command and dst.listens(port, protocol)
                jobs.append(
                    ProbeJob(
                        netns,
                        str(dst.ip),
                        port,
                        protocol,
                        http=builtin and not dns,
                        dns=dns,
                        source=src.name,
                        target=dst.name,
                        source_ip=str(src.ip),
                    )
                )
    return jobs


def _endpoint_netns(emulation: str, endpoint: AnalysisEndpoint) -> str:
    if endpoint.kind == "ecs" or endpoint.on_host_stack:
        return names.ecs_netns(emulation, endpoint.instance)
    namespace, _, pod = endpoint.name.partition("/")
    return names.pod_netns(emulation, namespace, pod)
