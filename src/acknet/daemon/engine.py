"""The reconcile loop of one emulation: render -> diff -> apply -> observe, one change at a time.

The engine holds what it last made real (plan, kernel plan, security-group tables, built-in
endpoints, processes) and moves the kernel from that to what the newest files ask for. Every step is
delegated to the layers below; the engine only orders them:

1. plan (controllers) and render (topology, security groups, workloads);
2. end what goes away while its namespace still exists (processes, built-in sockets);
3. apply the topology diff; load changed security-group tables whole;
4. start what is new (resolver files, built-in sockets, processes);
5. observe readiness until every running pod is ready.

Endpoints follow readiness: a new pod gets no Service traffic before its first successful probe, a
pod whose probe fails leaves its Services (supervision re-derives the EndpointSlices and loads only
kube-proxy's tables, as partial syncs, and the DNS records), and a pod that goes is drained first.

A restarted daemon has nothing in memory: it re-applies the newest revision against no previous
plan (apply is idempotent), removes namespaces of its emulation that the plan no longer has, and
adopts the built-in server and processes it finds running.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from acknet.analysis.endpoints import (
    Destination,
    EndpointIndex,
    IngressEndpoint,
    ServiceEndpoint,
    SlbEndpoint,
    SlbListener,
    resolve,
    resolve_destinations,
)
from acknet.analysis.endpoints import Endpoint as AnalysisEndpoint
from acknet.analysis.ingress import IngressRequest, find_location, find_server, normalize_path, route
from acknet.analysis.ingress_reach import seen_client
from acknet.analysis.reachability import ATTEMPTS_PER_BACKEND, parse_port
from acknet.analysis.slb import LAYER7
from acknet.analysis.slb import candidates as slb_candidates
from acknet.analysis.trace import parse_url, url_endpoint
from acknet.controllers.endpoints import with_endpoint_conditions
from acknet.controllers.ingress import IngressRoutes
from acknet.controllers.plan import plan as make_plan
from acknet.controllers.state import Plan, PlannedPod, Protocol
from acknet.dataplane.apply import builtin_server, nftables, processes
from acknet.dataplane.apply.netlink import apply_kernel_plan, list_netns, remove_emulation, remove_namespace
from acknet.dataplane.apply.nginx import NginxIngress
from acknet.dataplane.apply.nsutil import NetnsSwitcher
from acknet.dataplane.render import names, terway
from acknet.dataplane.render import policy as policy_render
from acknet.dataplane.render.dns import render_dns_records
from acknet.dataplane.render.ingress import controller_pods
from acknet.dataplane.render.kernel import KernelPlan, Namespace, sysctl_device
from acknet.dataplane.render.kube_proxy import KubeProxyTable, render_kube_proxy_table, update_script
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
from acknet.observe.health import SlbRuntime, end_stray_proxies
from acknet.observe.probe import ProbeJob
from acknet.observe.readiness import ReadinessCheck, run_check
from acknet.store.state import StateStore

_TABLE_LOADERS = 4  # nftables transactions in flight at once, one namespace each
_POLICY_LOADERS = _TABLE_LOADERS
READY_TIMEOUT = 120.0  # seconds `up` waits for readiness probes before reporting the pods not ready
NO_PROBE_PATIENCE = 10.0  # seconds `up` waits for the process of a pod without a readiness probe
# Seconds a deleted pod keeps running after kube-proxy stopped sending it new connections, so the ones
# it already accepted finish (a short terminationGracePeriodSeconds).
TERMINATION_GRACE = 1.0


def _with_new_namespaces(
    previous: KernelPlan | None, wanted: KernelPlan, only: Collection[str]
) -> KernelPlan:
    """``previous`` plus those namespaces of ``wanted`` named in ``only`` that it lacks, bare (without
    the sysctls of interfaces they do not have yet): applied over ``previous``, it creates just them."""
    base = previous if previous is not None else KernelPlan()
    have = {ns.name for ns in base.namespaces}
    extra = [
        Namespace(ns.name, tuple((k, v) for k, v in ns.sysctls if sysctl_device(k) is None))
        for ns in wanted.namespaces
        if ns.name in only and ns.name not in have
    ]
    namespaces = tuple(sorted((*base.namespaces, *extra), key=lambda n: n.key))
    return dataclasses.replace(base, namespaces=namespaces)


def load_side_by_side(namespaces: Sequence[str], load: Callable[[str], None]) -> list[str]:
    """Runs ``load`` for every namespace, a few at once: each namespace's tables are independent and
    each load is its own transaction (libnftables leaves the GIL). The first failure is raised once
    every load has finished; else the namespaces, in order."""
    if not namespaces:
        return []
    with ThreadPoolExecutor(max_workers=min(_TABLE_LOADERS, len(namespaces))) as pool:
        done = {netns: pool.submit(load, netns) for netns in namespaces}
    for future in done.values():
        future.result()
    return list(done)


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
        self.proxy_tables: dict[str, KubeProxyTable] = {}
        self.terway_tables: dict[str, str] = {}
        self.resolv_confs: dict[str, str] = {}  # namespace -> the resolv.conf written for it
        self.dns_zones: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self.policy_tables: dict[str, str] = {}  # node namespace -> the policy table text loaded there
        self.endpoints: dict[tuple[str, str, int, str], Endpoint] = {}
        self.processes: dict[str, tuple[Process, int]] = {}
        self.ready: dict[str, bool] = {}
        self._probe_failures: dict[str, int] = {}  # consecutive failed readiness checks per pod
        self._endpoints_not_ready: frozenset[str] = frozenset()  # what the loaded endpoints say
        self.retired: set[str] = set(json.loads(self.store.get_setting("retired") or "[]"))
        self.switcher = NetnsSwitcher()
        self.builtin: builtin_server.BuiltinServerClient | None = None
        self.builtin_pid: int | None = None
        self.resources: Resources | None = None
        self.on_change: Callable[[], None] | None = None
        self.slb: SlbRuntime | None = None  # CLB tables, health checks (started by _load_slbs)
        self.ingress: NginxIngress | None = None  # NGINX in the Ingress controller pods (_load_ingress)

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
        planned = make_plan(
            resources, previous=self.plan, retired=frozenset(self.retired), not_ready=self._not_ready()
        )
        # A pod new in this plan is not ready until its first successful probe: no connections yet.
        unready = self._not_ready(planned)
        planned = self._with_readiness(planned, unready)
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
        self._drain_leaving(planned)
        self._stop_removed(work)

        self._stage("building namespaces, links and routes", 2)
        # The namespaces that hold firewalls first, bare, and their tables in them before any link: a
        # new instance is under its security groups, a new node's pods under their policies, before
        # the first packet (the tables name interfaces, which may come later).
        apply_kernel_plan(_with_new_namespaces(self.kernel, kernel, tables), self.kernel)
        sg_changes = self._load_security_groups(planned, tables)
        policy_changes = self._load_policies(planned, kernel)
        diff = apply_kernel_plan(kernel, self.kernel)
        if adopting:
            wanted = {ns.name for ns in kernel.namespaces}
            for stray in list_netns(names.netns_prefix(self.name)):
                if stray not in wanted:
                    remove_namespace(stray)
        self.kernel = kernel

        self._stage("loading Services and DNS", 3)
        proxy_changes = self._load_kube_proxy(planned)
        self._load_terway_masq(planned)
        self._load_dns(planned)
        self._endpoints_not_ready = unready

        self._stage("starting workloads", 4)
        self._start_new(work)
        self._load_ingress(planned)
        # After the workloads: an SLB's first health checks find its backends listening, rather than
        # taking them out before they started (and back only after the healthy threshold).
        self._load_slbs(planned)
        self.plan, self.resources = planned, resources
        self.store.set_plan(revision, planned)

        self._stage("waiting for readiness", 5)
        pending = [f"{p.key}: {p.reason}" for p in planned.pods if p.phase == "Pending"]
        not_ready = self._wait_ready(planned)
        self._apply_readiness()
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
        changed = sorted(netns for netns, text in wanted.items() if loaded.get(netns) != text)

        def load(netns: str) -> None:
            nftables.load_script(netns, script(wanted[netns]), table)

        for netns in load_side_by_side(changed, load):
            loaded[netns] = wanted[netns]
        for netns in set(loaded) - wanted.keys():
            del loaded[netns]
        return len(changed)

    def _load_security_groups(self, planned: Plan, wanted: dict[str, str]) -> int:
        return self._replace_tables(
            wanted, self.sg_tables, table_name(self.name), lambda text: replace_script(text, self.name)
        )

    def _load_terway_masq(self, planned: Plan) -> int:
        """Terway's ``terway-masq`` on the nodes of exclusive-ENI pools (render/terway.py)."""
        wanted = {
            names.ecs_netns(self.name, node): text
            for node, text in terway.render_terway_masq(planned).items()
        }
        return self._replace_tables(wanted, self.terway_tables, terway.TABLE_NAME, terway.replace_script)

    def _load_kube_proxy(self, planned: Plan) -> int:
        """kube-proxy's table in every node (Services, NodePorts), before workloads start answering.

        A partial sync when the table was loaded before (only the changed chains, sets and map
        elements, in one transaction); the whole table when that is not possible or fails (the kernel
        no longer holds what we loaded: a failed transaction changes nothing)."""
        wanted = {}
        for node in planned.instances:
            if node.cluster is not None:
                netns = names.ecs_netns(self.name, node.name)
                previous = self.proxy_tables.get(netns)
                wanted[netns] = render_kube_proxy_table(
                    planned, node.name, node.cluster, self.name, previous=previous
                )
        changes = 0
        for netns, table in sorted(wanted.items()):
            old = self.proxy_tables.get(netns)
            script = update_script(old, table) if old is not None else None
            if script == "":
                self.proxy_tables[netns] = table  # same rules; keep the newest fragments
                continue
            if script is not None:
                try:
                    nftables.load_script(netns, script, "kube-proxy")
                except DataplaneError:
                    script = None
            if script is None:
                nftables.load_script(netns, kube_proxy_replace_script(table.text()), "kube-proxy")
            self.proxy_tables[netns] = table
            changes += 1
        for netns in set(self.proxy_tables) - wanted.keys():
            del self.proxy_tables[netns]
        return changes

    def _load_slbs(self, planned: Plan) -> int:
        """CLB instances: their listener tables and the VRouters' reply marks, loaded whole when changed;
        their health checks follow the plan (and, through ``current``, readiness after it)."""
        if self.slb is None:
            if not planned.load_balancers:
                return 0
            self.slb = SlbRuntime(
                self.name, on_event=self.store.record, folder=self.folder / "slb", pid_dir=self.pid_dir
            )
        return self.slb.load(planned, current=lambda: self.plan)

    def _load_ingress(self, planned: Plan) -> int:
        """The NGINX Ingress controller: nginx.conf from the plan's Ingresses, Services, ready endpoints
        and TLS Secrets, checked with ``nginx -t`` and loaded into every controller pod's NGINX (started,
        or reloaded so requests in flight finish). Follows the plan's endpoints, so readiness changes
        and draining reach NGINX as they reach kube-proxy."""
        if self.ingress is None:
            if not any(controller_pods(planned, cluster) for cluster in planned.resources.clusters):
                return 0
            self.ingress = NginxIngress(
                self.name, self.folder, self.pid_dir, self.log_dir, on_event=self.store.record
            )
        return self.ingress.load(planned)

    def _load_dns(self, planned: Plan) -> None:
        """The cluster DNS records the CoreDNS pods' built-in port 53 answers from."""
        zones = {cluster: render_dns_records(planned, cluster) for cluster in planned.resources.clusters}
        if zones != self.dns_zones and self.builtin is not None:
            self.builtin.set_dns_records(zones)
            self.dns_zones = zones

    def _load_policies(self, planned: Plan, kernel: KernelPlan) -> int:
        """Loads each node's policy table when its text changed, one transaction per node: set element
        edits when only elements changed (pod churn, labels), whole chains rewritten when policies or
        the pods they select changed (``table_changes``), the whole table when it is new to us (a
        restarted daemon) or an edit fails. A node whose cluster no longer has network policy loses
        its table."""
        wanted = {
            names.ecs_netns(self.name, node): text
            for node, text in policy_render.render_policies(planned, self.name).items()
        }
        table = policy_render.table_name(self.name)

        def load(netns: str, text: str) -> None:
            old = self.policy_tables.get(netns)
            edits = policy_render.table_changes(old, text) if old is not None else None
            if edits:
                try:
                    nftables.load_script(netns, edits, table)
                    return
                except DataplaneError:  # the kernel's table is not the one we last loaded
                    pass
            nftables.load_script(netns, policy_render.replace_script(text, self.name), table)

        # Nodes are independent: their transactions run side by side (libnftables leaves the GIL),
        # each node's still one transaction.
        changed = sorted(netns for netns, text in wanted.items() if self.policy_tables.get(netns) != text)
        with ThreadPoolExecutor(max_workers=min(_POLICY_LOADERS, len(changed) or 1)) as pool:
            done = {netns: pool.submit(load, netns, wanted[netns]) for netns in changed}
        for netns, future in done.items():
            if future.exception() is None:
                self.policy_tables[netns] = wanted[netns]
        for future in done.values():
            future.result()  # the first failure, after recording every table that did load
        changes = len(changed)
        existing = {ns.name for ns in kernel.namespaces}
        for netns in set(self.policy_tables) - wanted.keys():
            if netns in existing:
                nftables.delete_table(netns, policy_render.TABLE_FAMILY, table)
            del self.policy_tables[netns]
        return changes

    def _start_new(self, work: Workloads) -> None:
        for netns, text in work.resolv_confs.items():
            if self.resolv_confs.get(netns) != text:  # a thousand pods: a thousand files, written once
                processes.write_resolv_conf(netns, text)
                self.resolv_confs[netns] = text
        new = [e for e in work.endpoints if e.key not in self.endpoints]
        if new:
            if self.builtin is None:  # never record an endpoint as served without its socket
                self._ensure_builtin_server()
            assert self.builtin is not None
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
    def _not_ready(self, planned: Plan | None = None) -> frozenset[str]:
        """Pods whose endpoints are not ready: last probed not ready, and, with ``planned``, its running
        pods that are new since the previous plan and not probed yet."""
        out = {key for key, ok in self.ready.items() if not ok}
        if planned is not None:
            known = {p.key for p in self.plan.pods} if self.plan is not None else set()
            out.update(
                p.key
                for p in planned.pods
                if p.phase == "Running" and p.key not in self.ready and p.key not in known
            )
        return frozenset(out)

    @staticmethod
    def _with_readiness(
        planned: Plan, not_ready: frozenset[str], terminating: frozenset[str] = frozenset()
    ) -> Plan:
        slices = with_endpoint_conditions(planned.endpoint_slices, not_ready, terminating)
        if slices == planned.endpoint_slices:
            return planned
        return dataclasses.replace(planned, endpoint_slices=slices)

    def _apply_readiness(self) -> bool:
        """Readiness changed: the EndpointSlices follow, and with them only kube-proxy's tables (partial
        syncs) and the DNS records; addresses are not re-planned. The caller holds the lock."""
        not_ready = self._not_ready()
        if self.plan is None or self.kernel is None or not_ready == self._endpoints_not_ready:
            return False
        planned = self._with_readiness(self.plan, not_ready)
        if planned is not self.plan:
            self._load_kube_proxy(planned)
            self._load_dns(planned)
            self._load_ingress(planned)
            self.plan = planned
        self._endpoints_not_ready = not_ready
        return True

    def _drain_leaving(self, planned: Plan) -> None:
        """Pods about to go (deleted, replaced, moved) stop getting new connections before they stop:
        their endpoints turn terminating in the tables of the plan still in place (kube-proxy's, and
        the SLBs whose backends are pods or follow them: ENI mode, Local), then they get a short grace
        for the connections they already have. SLB proxies of instances that go end first, while
        their namespaces exist."""
        if self.slb is not None:
            self.slb.retire(planned)
        else:  # a restarted daemon: proxies of instances removed meanwhile, before they are strays
            end_stray_proxies(self.name, planned, self.pid_dir)
        if self.plan is None or self.kernel is None:
            return
        staying = {(p.key, p.ip) for p in planned.pods if p.phase == "Running"}
        leaving = frozenset(
            p.key for p in self.plan.pods if p.phase == "Running" and (p.key, p.ip) not in staying
        )
        if not leaving:
            return
        draining = self._with_readiness(self.plan, self._not_ready(), terminating=leaving)
        if draining is self.plan:
            return
        self._load_kube_proxy(draining)
        if self.slb is not None:
            # The plan in place stays the SLB runtime's source: its readiness watch must not undo this.
            self.slb.load(draining, source=self.plan)
        self._load_dns(draining)
        self._load_ingress(draining)
        if not self._stop.is_set():
            time.sleep(TERMINATION_GRACE)

    def _observe_readiness(self, planned: Plan, pod: PlannedPod, ok: bool) -> None:
        """One periodic check: ready on a success; not ready after failureThreshold checks in a row
        fail (the kubelet's rule; the smallest threshold of the pod's probes, 3 by default), or at once
        when it was not ready already."""
        if ok:
            self._probe_failures.pop(pod.key, None)
            self.ready[pod.key] = True
            return
        failures = self._probe_failures.get(pod.key, 0) + 1
        self._probe_failures[pod.key] = failures
        spec = pod_spec(planned, pod)
        probes = [c.readiness_probe for c in spec.containers if c.readiness_probe] if spec else []
        threshold = min((max(1, p.failure_threshold) for p in probes), default=1)
        if failures >= threshold or not self.ready.get(pod.key, False):
            self.ready[pod.key] = False

    def _checks(self, planned: Plan, pod: PlannedPod) -> list[ReadinessCheck]:
        spec = pod_spec(planned, pod)
        if spec is None or pod.ip is None or pod.node is None:
            return []
        node_netns = names.ecs_netns(self.name, pod.node)
        # A hostNetwork pod lives in its node's namespace: its exec probes run there.
        pod_netns = node_netns if pod.host_network else names.pod_netns(self.name, pod.namespace, pod.name)
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
        keys = {p.key for p in running}
        for key in list(self.ready):
            if key not in keys:
                del self.ready[key]
        for key in list(self._probe_failures):
            if key not in keys:
                del self._probe_failures[key]
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
                    self._observe_readiness(plan, pod, self._probe_ready(plan, pod))
            if self._lock.acquire(blocking=False):  # a reconcile started meanwhile: it applies them
                try:
                    if self.plan is plan:
                        self._apply_readiness()
                except AcknetError as exc:
                    self.store.record("failed", "readiness", str(exc))
                finally:
                    self._lock.release()

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
            if self.slb is not None:
                self.slb.stop()  # first: its watch must not start a proxy again once they are ended
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
    a DNS query. A Service (``svc/NS/NAME``) is probed as a client reaches it (``_service_jobs``), an SLB
    through its listeners (``_slb_jobs``), an Ingress (``ingress/NS/NAME``) by the HTTP requests that
    exercise its rules, sent through the controller's SLB (``_ingress_jobs``); a URL destination
    (``https://HOST/PATH``) is that one request."""
    index = EndpointIndex.of(plan)
    pods = {f"{p.namespace}/{p.name}": p for p in plan.pods}
    srcs = resolve(index, list(sources) if sources else None, "from")
    # A URL (``trace --live SRC URL``) is one request through the Ingress controller, as trace has it.
    urls = {d: url for d in destinations or () if (url := parse_url(d)) is not None}
    named = [d for d in destinations or () if d not in urls]
    dsts: list[Destination] = resolve_destinations(index, named) if named or not urls else []
    dsts.extend(url_endpoint(index, text, *url) for text, url in urls.items())
    wanted = [parse_port(p) for p in ports] if ports else None
    jobs = []
    for src in srcs:
        netns = _endpoint_netns(emulation, src)
        for dst in dsts:
            if isinstance(dst, ServiceEndpoint):
                for port, protocol in wanted if wanted is not None else dst.declared_ports:
                    jobs.extend(_service_jobs(netns, src, dst, port, protocol, pods))
                continue
            if isinstance(dst, SlbEndpoint):
                for port, protocol in wanted if wanted is not None else dst.declared_ports:
                    jobs.extend(_slb_jobs(netns, src, dst, port, protocol, pods))
                continue
            if isinstance(dst, IngressEndpoint):
                for port, protocol in wanted if wanted is not None else dst.declared_ports:
                    jobs.extend(_ingress_jobs(netns, src, dst, port, protocol))
                continue
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


def _service_jobs(
    netns: str,
    src: AnalysisEndpoint,
    svc: ServiceEndpoint,
    port: int,
    protocol: Protocol,
    pods: dict[str, PlannedPod],
) -> list[ProbeJob]:
    """Real connections to a Service port, labelled with the Service and its port so ``verdicts``
    merges them into one verdict (allowed when all succeed, partial when some do).

    Pods and nodes of the cluster connect to the ClusterIP; anyone else to the NodePort on every
    node's primary IP (or, without one, to the ClusterIP, which the VPC does not route). kube-proxy
    picks an endpoint at random per connection, so each address gets ATTEMPTS_PER_BACKEND attempts
    per backend. A headless Service is its endpoints' addresses, one connection each.
    """
    target = svc.port(port, protocol)
    backends = target.usable() if target is not None else ()
    # What answers: the built-in server (HTTP) or CoreDNS (DNS) when every backend is one of them.
    found = [b.endpoint for b in backends]
    ends = [e for e in found if e is not None]
    complete = bool(ends) and len(ends) == len(found) and target is not None
    dns = complete and all(
        (pod := pods.get(e.name)) is not None and speaks_dns(pod, b.port)
        for e, b in zip(ends, backends, strict=True)
    )
    builtin = (
        complete
        and protocol == "TCP"
        and all(
            not e.runs_command and e.listens(b.port, protocol) for e, b in zip(ends, backends, strict=True)
        )
    )

    def job(ip: str, to_port: int, count: int) -> list[ProbeJob]:
        one = ProbeJob(
            netns,
            ip,
            to_port,
            protocol,
            http=builtin and not dns,
            dns=dns,
            source=src.name,
            target=svc.name,
            source_ip=str(src.ip),
            label_port=port,
        )
        return [one] * count

    attempts = ATTEMPTS_PER_BACKEND * len(backends) if len(backends) > 1 else 2
    service = svc.service
    if service.headless:
        if not backends:
            return job("", port, 1)  # the name resolves to no address: nothing to connect to
        return [j for b in backends for j in job(str(b.ip), b.port, 1)]
    cluster_ip = str(service.cluster_ip)
    if src.cluster == service.cluster:
        return job(cluster_ip, port, attempts)
    node_port = target.port.node_port if target is not None else None
    if node_port is None or service.type not in ("NodePort", "LoadBalancer") or not svc.nodes:
        return job(cluster_ip, port, 2)  # not routed outside the cluster: this is expected to fail
    return [j for node in svc.nodes for j in job(str(node.ip), node_port, attempts)]


# Seconds an SLB probe waits: its attempts converge on the same few backend servers at once (twice as
# long over TLS, whose handshakes one NGINX worker makes one after the other).
SLB_PROBE_TIMEOUT = 3.0


def _slb_jobs(
    netns: str,
    src: AnalysisEndpoint,
    slb: SlbEndpoint,
    port: int,
    protocol: Protocol,
    pods: dict[str, PlannedPod],
) -> list[ProbeJob]:
    """Real connections to an SLB's VIP and listener port, labelled with the SLB so ``verdicts`` merges
    them (allowed when all succeed, partial when some do).

    The scheduler spreads new connections over the backend servers by weight and kube-proxy behind a
    NodePort over its endpoints at random, so there are enough attempts for the least likely path to
    be met about ATTEMPTS_PER_BACKEND times. What answers decides what counts: the built-in server's
    HTTP JSON (layer 7 too, through NGINX; its 502/503/504 are failures) or echo, CoreDNS's DNS, or
    for other listeners a connection (layer 4) or any HTTP answer but NGINX's own errors (layer 7). A
    TCP listener with no backend completes the handshake only, which is why built-in ports must answer.
    """
    vip = str(slb.lb.address) if slb.live is None and slb.lb.address is not None else ""
    target = slb.listener(port, protocol)
    tls = target is not None and target.listener.protocol == "https"

    def job(count: int, http: bool = False, dns: bool = False, any_http: bool = False) -> list[ProbeJob]:
        one = ProbeJob(
            netns,
            vip,
            port,
            protocol,
            http=http,
            dns=dns,
            http_any=any_http,
            tls=tls,
            timeout=SLB_PROBE_TIMEOUT * (2 if tls else 1),
            source=src.name,
            target=slb.name,
            source_ip=str(src.ip),
            label_port=port,
        )
        return [one] * count

    if target is None:
        return job(2)  # no listener: the instance drops it
    layer7 = target.listener.protocol in LAYER7
    paths = _slb_paths(src, target)
    if not paths:
        return job(2, http=protocol == "TCP")  # handshake only (layer 4) or 503 (layer 7)
    least = min(p for p, _, _ in paths)
    attempts = min(400, max(2, round(ATTEMPTS_PER_BACKEND / least))) if len(paths) > 1 else 2
    complete = all(e is not None for _, e, _ in paths)
    dns = complete and all(
        (pod := pods.get(e.name)) is not None and speaks_dns(pod, p) for _, e, p in paths if e is not None
    )
    builtin = complete and all(
        not e.runs_command and e.listens(p, protocol) for _, e, p in paths if e is not None
    )
    if layer7:
        return job(attempts, http=builtin, any_http=not builtin)
    return job(attempts, http=builtin and protocol == "TCP" and not dns, dns=dns)


# What acknet renders for NGINX (dataplane/render/ingress.py, ingress-nginx's ConfigMap defaults):
# an upstream that does not accept the connection within proxy-connect-timeout is left for the next
# one (proxy_next_upstream error timeout), at most proxy-next-upstream-tries times in all.
PROXY_CONNECT_TIMEOUT = 5.0
PROXY_NEXT_UPSTREAM_TRIES = 3
_INGRESS_MAX_ATTEMPTS = 64


def _ingress_jobs(
    netns: str, src: AnalysisEndpoint, dst: IngressEndpoint, port: int, protocol: Protocol
) -> list[ProbeJob]:
    """Real HTTP(S) requests through the Ingress controller's SLB (the cluster's
    kube-system/nginx-ingress-lb), labelled with the Ingress and the port, for ``verdicts`` to merge.

    Every client, in the VPC or on the Internet, sends them to the SLB's VIP, where the Ingress hosts'
    DNS records point. The requests are the Ingress's sample requests of the port (https on 443, http on
    80) or a URL's; the pods a reply may come from are those the files route the request to
    (``analysis.ingress.route``, judging whitelist-source-range on the address NGINX sees, as
    ``check`` does, when it is the same on every path). A request NGINX should
    answer itself (308, 403, 404, 503) expects no backend, so it fails as ``check`` says it does.

    Attempts: ATTEMPTS_PER_BACKEND per backend of the rule, and per the least likely SLB path to a
    controller pod. NGINX's round robin is shared by every request in flight (other sources', other
    rules' to the same upstream), so which backend a request meets is as good as random: the
    backends are counted over the controller pods together (``observe.probe.verdicts``), while
    ``check`` judges each controller pod to each backend.

    Timeouts: the connection to the VIP as for an SLB; then, a request whose upstream does not accept
    the connection goes to the next one after proxy_connect_timeout, up to proxy_next_upstream_tries
    upstreams, so the reply is awaited for all of them: a backend's answer after the others timed out,
    or NGINX's own 504 when none answered (an answer, not a timeout, which ``probe_all`` would take for
    an overloaded host and send again).
    """
    slb = dst.slb
    vip = str(slb.lb.address) if slb is not None and slb.live is None and slb.lb.address is not None else ""
    listener = slb.listener(port, protocol) if slb is not None else None
    paths = _slb_paths(src, listener) if listener is not None else []
    least = min((p for p, _, _ in paths), default=1.0)
    # The address NGINX sees, when every path shows it the same one (else whitelists stay unjudged).
    seen = (
        {seen_client(src, slb, listener, s) for s in slb_candidates(listener)}
        if slb is not None and listener is not None
        else set()
    )
    client = next(iter(seen)) if len(seen) == 1 else None
    requests = list(dst.requests_for(port))
    if not requests and port in (80, 443):
        # No request of this port's scheme (TLS hosts only, whose plain HTTP is redirected, say): the
        # Ingress's requests sent that way get what NGINX answers them.
        scheme: Literal["http", "https"] = "https" if port == 443 else "http"
        again = {(r.host, r.path): dataclasses.replace(r, scheme=scheme) for r in dst.requests}
        requests = list(again.values())
    jobs: list[ProbeJob] = []
    for request in requests:
        decision = route(dst.routes, dataclasses.replace(request, client=client))
        backends: tuple[str, ...] | None = ()
        if decision.proxied:
            backends = tuple(f"{ip}:{p}" for ip, p in decision.upstreams)
            builtin = all(
                (e := dst.by_ip.get(ip)) is not None and not e.runs_command and e.listens(p, "TCP")
                for ip, p in decision.upstreams
            )
            if not builtin or _canary_draw(dst.routes, request):
                backends = None  # not every answer names its pod: any answer but NGINX's own counts
        n = len(backends) if backends else 1
        tries = min(PROXY_NEXT_UPSTREAM_TRIES, n)
        attempts = min(
            _INGRESS_MAX_ATTEMPTS, max(2, ATTEMPTS_PER_BACKEND * n, math.ceil(ATTEMPTS_PER_BACKEND / least))
        )
        tls = request.scheme == "https"
        one = ProbeJob(
            netns,
            vip,
            port,
            protocol,
            tls=tls,
            ingress=True,
            host=request.host,
            path=request.path,
            headers=tuple(sorted(request.headers.items())),
            backends=backends,
            timeout=SLB_PROBE_TIMEOUT,
            reply_timeout=SLB_PROBE_TIMEOUT * (2 if tls else 1) + PROXY_CONNECT_TIMEOUT * tries,
            source=src.name,
            target=dst.name,
            source_ip=str(src.ip),
            label_port=port,
        )
        jobs.extend([one] * (attempts if paths else 2))
    if not jobs:  # nothing to send (a port that is neither 80 nor 443): no request gets through
        one = ProbeJob(
            netns, vip, port, protocol, ingress=True, backends=(), source=src.name, target=dst.name,
            source_ip=str(src.ip), label_port=port,
        )  # fmt: skip
        jobs = [one] * 2
    return jobs


def _canary_draw(routes: IngressRoutes, request: IngressRequest) -> bool:
    """Whether NGINX draws the backend by canary-weight for ``request`` (the main or the canary's)."""
    loc = find_location(find_server(routes, request.host), normalize_path(request.path))
    canary = loc.canary if loc is not None else None
    return canary is not None and bool(canary.upstream.servers) and 0 < canary.weight < canary.weight_total


def _slb_paths(
    src: AnalysisEndpoint, target: SlbListener
) -> list[tuple[float, AnalysisEndpoint | None, int]]:
    """(probability, the endpoint that answers, its port) of every path from ``src`` through the
    listener: over the backend servers by weight (or in turn), and behind a NodePort over the
    Service's endpoints; empty when the listener has no backend server to send to."""
    servers = slb_candidates(target)
    if not servers:
        return []
    total = sum(s.backend.weight for s in servers) if target.listener.scheduler != "rr" else len(servers)
    paths: list[tuple[float, AnalysisEndpoint | None, int]] = []
    for server in servers:
        share = (server.backend.weight if target.listener.scheduler != "rr" else 1) / total
        svc = server.node_port_of
        svc_port = (
            next((p for p in svc.ports if p.port.node_port == server.backend.port), None) if svc else None
        )
        if svc is not None and svc_port is not None and server.endpoint is not None:
            ends = svc_port.usable()
            # Local: the node's own endpoints, unless kube-proxy short-circuits a pod client to all.
            if svc.service.external_traffic_policy == "Local" and src.kind != "pod":
                ends = tuple(b for b in ends if b.node == server.endpoint.instance)
            paths.extend((share / len(ends), b.endpoint, b.port) for b in ends)
            if not ends:
                paths.append((share, None, server.backend.port))
        else:
            paths.append((share, server.endpoint, server.backend.port))
    return paths


def _endpoint_netns(emulation: str, endpoint: AnalysisEndpoint) -> str:
    if endpoint.kind == "internet":
        return names.internet_netns(emulation)
    if endpoint.kind == "ecs" or endpoint.on_host_stack:
        return names.ecs_netns(emulation, endpoint.instance)
    namespace, _, pod = endpoint.name.partition("/")
    return names.pod_netns(emulation, namespace, pod)
