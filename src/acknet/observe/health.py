"""CLB health checks and the layer-4 runtime of every SLB namespace, inside the daemon.

``SlbRuntime`` owns the nftables tables of the CLB instances (``ip <emulation>-slb`` in each SLB
namespace, ``inet <emulation>-slb`` in each VRouter with one), loads them whole when their text
changes, and runs one asyncio loop on a thread of its own that

- health-checks every backend of every layer-4 listener from the instance's namespace, with a source
  in 100.64.0.0/10 (the range CLB checks from; "CLB health checks", help.aliyun.com): TCP (a SYN; a
  SYN-ACK within the timeout is success, then the connection is reset, as CLB does), HTTP (``HEAD``
  of the URI with ``Host`` = the domain, the status class must be one of the accepted codes) and UDP
  (a datagram; an ICMP port unreachable within the timeout is failure, silence or an answer success);
- applies the thresholds: a backend turns unhealthy after ``unhealthyThreshold`` failures in a row and
  healthy again after ``healthyThreshold`` successes, checks one ``interval`` apart, each allowed the
  ``timeout``; so a failing backend leaves within ``timeout x unhealthy + interval x (unhealthy - 1)``
  (health check FAQ). A change edits only that listener's map (render/slb.py ``map_update_script``);
- keeps a listening socket on every TCP listener's VIP and port: when no backend is left the DNAT
  finds nothing and the connection lands here, which completes the handshake and forwards nothing
  (Billing FAQ: "Layer 4 returns only the three-way handshake");
- steers the ``wlc`` listeners (weighted least connections) by live connection counts: every
  ``WLC_INTERVAL`` seconds it reads the conntrack table of each instance with such a listener
  (apply/conntrack.py), counts every backend's live connections per listener and, when the slots
  change, loads the listener's map anew (render/slb.py ``wlc_update_script``; the decision is
  render's ``map_elements`` with the counts). Its lag: counts at most one interval old;
- runs the layer-7 proxy of every instance with HTTP or HTTPS listeners (render/slb_l7.py,
  apply/slb_proxy.py): the health checks of those listeners edit its upstream lists, each change one
  graceful reload, and a proxy that died is started again. Proxies of instances that go are ended
  before their namespaces are removed (``retire``).

Backends start healthy (an emulation choice: ``up`` returns with listeners forwarding); the
decisions, which backends a listener sends to, are render/slb.py's. The runtime only observes and loads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from acknet.controllers.slb import refresh_service_backends
from acknet.controllers.state import Plan, PlannedLoadBalancer, SlbHealthCheck
from acknet.dataplane.apply import conntrack, nftables, processes, slb_proxy
from acknet.dataplane.apply.nsutil import NetnsSwitcher
from acknet.dataplane.render import names, slb_l7
from acknet.dataplane.render import slb as slb_render
from acknet.errors import AcknetError, DataplaneError

_CODE_CLASSES = {"http_2xx": 2, "http_3xx": 3, "http_4xx": 4, "http_5xx": 5}
_COUNTER = re.compile(r"counter (over_\S+) \{\s*packets (\d+)")
_PLAN_POLL = 1.0  # seconds between looks at the engine's plan (readiness changes Local backends)


@dataclass(frozen=True)
class Target:
    """One backend of one listener, as its checker probes it."""

    lb: str
    listener: str  # "tcp/80"
    netns: str
    source: str
    ip: str
    port: int  # where the check goes (HealthCheckConnectPort, else the backend's port)
    backend_port: int
    check: SlbHealthCheck

    @property
    def backend(self) -> slb_render.BackendKey:
        return (self.ip, self.backend_port)


@dataclass
class State:
    healthy: bool = True
    successes: int = 0
    failures: int = 0
    last: str = ""  # what the last probe saw
    changed: float = field(default_factory=time.monotonic)


def step(state: State, ok: bool, check: SlbHealthCheck) -> bool:
    """One check's result applied to a backend's state; True when the backend turned healthy or
    unhealthy: ``unhealthyThreshold`` failures in a row take it out, ``healthyThreshold`` successes in
    a row bring it back (health check FAQ)."""
    if ok:
        state.successes, state.failures = state.successes + 1, 0
        flip = not state.healthy and state.successes >= check.healthy_threshold
    else:
        state.failures, state.successes = state.failures + 1, 0
        flip = state.healthy and state.failures >= check.unhealthy_threshold
    if flip:
        state.healthy = not state.healthy
        state.changed = time.monotonic()
    return flip


async def probe(target: Target, switcher: NetnsSwitcher) -> tuple[bool, str]:
    """One health check of ``target``: (success, what was seen)."""
    check = target.check
    loop = asyncio.get_running_loop()
    kind = socket.SOCK_DGRAM if check.type == "udp" else socket.SOCK_STREAM
    try:
        sock = switcher.socket(target.netns, socket.AF_INET, kind)
    except AcknetError as exc:
        return False, f"no namespace: {exc}"
    sock.setblocking(False)
    try:
        sock.bind((target.source, 0))
        if check.type == "udp":
            return await _udp(sock, target, loop)
        await asyncio.wait_for(loop.sock_connect(sock, (target.ip, target.port)), check.timeout)
        if check.type == "tcp":
            # CLB answers the SYN-ACK with ACK + RST: linger 0 makes close() send the RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return True, "connected"
        return await _http(sock, target, loop)
    except TimeoutError:
        return False, "timeout"
    except OSError as exc:
        return False, errno.errorcode.get(exc.errno or 0, str(exc))
    finally:
        sock.close()


async def _http(sock: socket.socket, target: Target, loop: asyncio.AbstractEventLoop) -> tuple[bool, str]:
    check = target.check
    host = (check.domain or target.ip).replace("$_ip", target.ip)
    request = f"HEAD {check.uri} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: acknet-slb-health\r\n\r\n"
    await asyncio.wait_for(loop.sock_sendall(sock, request.encode()), check.timeout)
    data = b""
    while b"\r\n" not in data and len(data) < 4096:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), check.timeout)
        if not chunk:
            break
        data += chunk
    parts = data.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return False, "no HTTP status"
    code = int(parts[1])
    accepted = {_CODE_CLASSES[c] for c in check.http_codes if c in _CODE_CLASSES}
    return code // 100 in accepted, f"HTTP {code}"


async def _udp(sock: socket.socket, target: Target, loop: asyncio.AbstractEventLoop) -> tuple[bool, str]:
    sock.connect((target.ip, target.port))
    sock.send(b"acknet-slb-health\n")
    try:
        await asyncio.wait_for(loop.sock_recv(sock, 2048), target.check.timeout)
    except TimeoutError:
        return True, "no ICMP error"  # silence is success for CLB's UDP check
    except ConnectionRefusedError:
        return False, "ICMP port unreachable"
    return True, "answered"


def targets_of(plan: Plan, emulation: str) -> list[Target]:
    out = []
    for lb in slb_render.live(plan):
        netns = names.slb_netns(emulation, lb.name)
        for li in lb.listeners:
            check = li.health_check
            if not check.enabled:
                continue
            masters = [b for b in li.backends if b.role == "Master"]
            # A primary/secondary group checks only its primary (CreateMasterSlaveServerGroup).
            for b in masters or li.backends:
                out.append(
                    Target(
                        lb.name,
                        li.key,
                        netns,
                        str(lb.health_source),
                        str(b.ip),
                        check.port or b.port,
                        b.port,
                        check,
                    )
                )
    return out


def end_stray_proxies(emulation: str, plan: Plan, pid_dir: Path) -> int:
    """Ends the layer-7 proxies a previous daemon started for instances ``plan`` no longer has, while
    their namespaces still exist (a restarted daemon removes them as strays); returns how many."""
    keep = {slb_proxy.label_of(names.slb_netns(emulation, lb.name)) for lb in slb_render.live(plan)}
    count = 0
    for path in sorted(pid_dir.glob(f"{slb_proxy.label_of('')}*.pid")) if pid_dir.is_dir() else []:
        if path.stem not in keep:
            count += processes.stop_recorded(pid_dir, path.stem)
    return count


class SlbRuntime:
    """The SLB tables, their health checks and their handshake sockets, for one emulation."""

    def __init__(
        self,
        emulation: str,
        on_event: Callable[[str, str, str], None] | None = None,
        folder: Path | None = None,
        pid_dir: Path | None = None,
    ) -> None:
        """``folder`` holds the layer-7 proxies' files (one folder per instance), ``pid_dir`` their pid
        files (the emulation's, so ``down`` ends them); without both, no layer-7 listener is served."""
        self.emulation = emulation
        self.on_event = on_event
        self.folder = folder
        self.pid_dir = pid_dir
        self._proxies: dict[str, tuple[slb_l7.ProxyConfig, int]] = {}  # SLB namespace -> loaded, pid
        self._stopped = False  # after stop(): no proxy is started or revived any more
        self._lock = threading.RLock()
        self._tables: dict[str, str] = {}  # SLB namespace -> table text loaded
        self._vrouter_tables: dict[str, str] = {}
        self._lbs: dict[str, PlannedLoadBalancer] = {}
        self._states: dict[tuple[str, str, slb_render.BackendKey], State] = {}
        self._plan: Plan | None = None
        self._source: Plan | None = None
        self._reported: dict[str, tuple[str, ...]] = {}  # load balancer -> the events reported
        self._current: Callable[[], Plan | None] | None = None
        self._loop = asyncio.new_event_loop()
        self._tasks: dict[Target, asyncio.Task[None]] = {}
        self._sinks: dict[tuple[str, str, int], asyncio.base_events.Server] = {}
        self._switcher: NetnsSwitcher | None = None
        # wlc: per (load balancer, listener key) the conntrack ids of the last reading and the counts
        # with the new connections it saw; per (namespace, listener key) the elements loaded last.
        self._wlc_ids: dict[tuple[str, str], frozenset[int]] = {}
        self._wlc_counts: dict[tuple[str, str], tuple[dict[slb_render.BackendKey, int], int]] = {}
        self._wlc_loaded: dict[tuple[str, str], list[str]] = {}
        self._wlc_errors: dict[str, str] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slb-health", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    # -- the loop thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._switcher = NetnsSwitcher()  # made on the thread that uses it
        self._loop.create_task(self._watch_plan())
        self._loop.create_task(self._steer_wlc())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._switcher.close()

    async def _watch_plan(self) -> None:
        """Readiness changes the plan's EndpointSlices, and with them Local Services' backends."""
        while True:
            await asyncio.sleep(_PLAN_POLL)
            current = self._current() if self._current is not None else None
            try:
                if current is not None and current is not self._source:
                    await asyncio.to_thread(self.load, current)
                elif self._proxies:
                    await asyncio.to_thread(self._revive_proxies)
            except AcknetError as exc:
                self._event("failed", "slb", str(exc))

    async def _steer_wlc(self) -> None:
        """Reads the connection counts of every instance with a wlc listener, WLC_INTERVAL apart."""
        assert self._switcher is not None
        while True:
            await asyncio.sleep(slb_render.WLC_INTERVAL)
            for lb in list(self._lbs.values()):
                if not slb_render.wlc_listeners(lb):
                    continue
                netns = names.slb_netns(self.emulation, lb.name)
                try:
                    sock = self._switcher.socket(
                        netns, socket.AF_NETLINK, socket.SOCK_RAW, conntrack.NETLINK_NETFILTER
                    )
                    try:
                        flows = await asyncio.to_thread(conntrack.dump, sock)
                    finally:
                        sock.close()
                    readings = slb_render.count_connections(lb, flows)
                    await asyncio.to_thread(self._steer, lb.name, readings)
                    self._wlc_errors.pop(lb.name, None)
                except Exception as exc:  # a reading that fails is reported, never a dead steering loop
                    # Reported once per distinct failure, not four times a second.
                    if self._wlc_errors.get(lb.name) != str(exc):
                        self._wlc_errors[lb.name] = str(exc)
                        self._event("failed", f"slb/{lb.name}", f"wlc connection counts: {exc}")

    def _steer(
        self,
        lb_name: str,
        readings: dict[str, tuple[dict[slb_render.BackendKey, int], frozenset[int]]],
    ) -> None:
        """One reading of ``lb_name``'s connection counts applied to its wlc listeners' maps."""
        with self._lock:
            lb = self._lbs.get(lb_name)
            if lb is None:
                return
            netns = names.slb_netns(self.emulation, lb.name)
            for li in slb_render.wlc_listeners(lb):
                reading = readings.get(li.key)
                if reading is None:
                    continue
                counts, ids = reading
                before = self._wlc_ids.get((lb_name, li.key))
                # The connections opened during the last interval: how many the next one should expect.
                expected = 1 if before is None else max(1, len(ids - before))
                self._wlc_ids[(lb_name, li.key)] = ids
                self._wlc_counts[(lb_name, li.key)] = (counts, expected)
                elements = slb_render.map_elements(li, self.unhealthy(lb_name, li.key), counts, expected)
                if self._wlc_loaded.get((netns, li.key)) == elements:
                    continue
                script = slb_render.wlc_update_script(li, self.emulation, elements)
                nftables.load_script(netns, script, slb_render.table_name(self.emulation))
                self._wlc_loaded[(netns, li.key)] = elements

    def connections(self) -> dict[str, dict[str, dict[slb_render.BackendKey, int]]]:
        """Load balancer -> wlc listener -> backend -> live connections at the last reading."""
        out: dict[str, dict[str, dict[slb_render.BackendKey, int]]] = {}
        for (lb, key), (counts, _) in list(self._wlc_counts.items()):
            out.setdefault(lb, {})[key] = dict(counts)
        return out

    async def _check(self, target: Target) -> None:
        assert self._switcher is not None
        check = target.check
        key = (target.lb, target.listener, target.backend)
        while True:
            try:
                ok, seen = await probe(target, self._switcher)
            except Exception as exc:  # a check that cannot run is a failed check, never a dead checker
                ok, seen = False, f"{type(exc).__name__}: {exc}"
            state = self._states.setdefault(key, State())
            state.last = seen
            if step(state, ok, check):
                self._event(
                    "healthy" if state.healthy else "unhealthy",
                    f"slb/{target.lb} {target.listener} {target.ip}:{target.backend_port}",
                    seen,
                )
                await asyncio.to_thread(self._apply_health, target.lb, target.listener)
            await asyncio.sleep(check.interval)

    async def _sink(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection no backend took: the handshake is done, nothing is forwarded, nothing answered."""
        with contextlib.suppress(OSError, asyncio.TimeoutError):
            while await asyncio.wait_for(reader.read(65536), 900):  # CLB's TCP idle timeout
                pass
        writer.close()

    async def _start_sink(self, netns: str, vip: str, port: int) -> None:
        assert self._switcher is not None
        sock = self._switcher.socket(netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((vip, port))
            sock.listen(128)
            sock.setblocking(False)
            server = await asyncio.start_server(self._sink, sock=sock)
        except OSError as exc:
            sock.close()
            self._event("failed", f"{netns} {vip}:{port}", f"handshake socket: {exc}")
            return
        self._sinks[(netns, vip, port)] = server

    async def _configure(
        self, targets: list[Target], sinks: set[tuple[str, str, int]], gone: set[str]
    ) -> None:
        assert self._switcher is not None
        wanted = set(targets)
        for target, task in list(self._tasks.items()):
            if target not in wanted:
                task.cancel()
                del self._tasks[target]
        for key, server in list(self._sinks.items()):
            if key not in sinks or key[0] in gone:
                server.close()
                del self._sinks[key]
        for netns in gone:
            self._switcher.forget(netns)  # a namespace made again is another namespace
        for target in targets:
            if target not in self._tasks:
                self._tasks[target] = self._loop.create_task(self._check(target))
        for key in sorted(sinks - self._sinks.keys()):
            await self._start_sink(*key)

    # -- the engine's side ------------------------------------------------------------------------------
    def _event(self, what: str, obj: str, detail: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(what, obj, detail)

    def unhealthy(self, lb: str, listener: str) -> set[slb_render.BackendKey]:
        return {
            b
            for (name, key, b), s in list(self._states.items())
            if name == lb and key == listener and not s.healthy
        }

    def _apply_health(self, lb_name: str, listener_key: str) -> None:
        with self._lock:
            lb = self._lbs.get(lb_name)
            if lb is None:
                return
            listener = next((li for li in lb.listeners if li.key == listener_key), None)
            if listener is None:
                return
            netns = names.slb_netns(self.emulation, lb.name)
            if listener.protocol in ("http", "https"):
                try:
                    self._sync_proxy(lb)
                except AcknetError as exc:
                    self._event("failed", f"slb/{lb_name}", str(exc))
                return
            # A wlc listener keeps steering by its last counts; the next reading corrects the rest.
            counts, expected = self._wlc_counts.get((lb_name, listener_key), (None, 1))
            script = slb_render.map_update_script(
                lb, listener, self.emulation, self.unhealthy(lb_name, listener_key), counts, expected
            )
            self._wlc_loaded.pop((netns, listener_key), None)
            try:
                nftables.load_script(netns, script, slb_render.table_name(self.emulation))
            except DataplaneError as exc:
                self._event("failed", f"slb/{lb_name}", str(exc))
                return
            # Keep the record in step, so the next whole load is the same table.
            self._tables[netns] = self._render(lb)

    # -- layer-7 proxies (their calls hold self._lock) -------------------------------------------------
    def _proxy_config(self, lb: PlannedLoadBalancer) -> slb_l7.ProxyConfig | None:
        if self.folder is None or self._plan is None:
            return None
        netns = names.slb_netns(self.emulation, lb.name)
        down = {li.key: self.unhealthy(lb.name, li.key) for li in slb_l7.layer7(lb)}
        return slb_l7.render_proxy(self._plan, lb, netns, str(self.folder / netns), down)

    def _sync_proxy(self, lb: PlannedLoadBalancer) -> int:
        """Starts, reloads or ends ``lb``'s proxy to match its layer-7 listeners; 1 when it changed."""
        if self.pid_dir is None or self._stopped:
            return 0
        netns = names.slb_netns(self.emulation, lb.name)
        config = self._proxy_config(lb)
        loaded = self._proxies.get(netns)
        if config is None:
            if loaded is not None:
                self._stop_proxy(netns)
                return 1
            return 0
        if loaded is not None and slb_proxy.running(loaded[1], netns):
            if loaded[0] == config:
                return 0
            slb_proxy.reload(config, loaded[1])
            self._proxies[netns] = (config, loaded[1])
            return 1
        pid = slb_proxy.adopt(config, self.pid_dir)
        if pid is not None:
            slb_proxy.reload(config, pid)  # a previous daemon's: it gets this plan's configuration
        else:
            log = Path(config.folder) / "nginx.log"
            pid = slb_proxy.start(config, self.pid_dir, log)
            self._event("started", f"slb/{lb.name}", f"layer-7 proxy, pid {pid}")
        self._proxies[netns] = (config, pid)
        return 1

    def _stop_proxy(self, netns: str) -> None:
        if self.pid_dir is not None:
            slb_proxy.stop(netns, self.pid_dir)
        self._proxies.pop(netns, None)

    def _revive_proxies(self) -> None:
        """A proxy that died is started again (its namespace still there)."""
        with self._lock:
            for netns, (config, pid) in list(self._proxies.items()):
                lb = self._lbs.get(config.lb)
                if lb is not None and not slb_proxy.running(pid, netns):
                    self._event("died", f"slb/{config.lb}", f"layer-7 proxy, pid {pid}")
                    del self._proxies[netns]
                    self._sync_proxy(lb)

    def retire(self, plan: Plan) -> None:
        """Ends the proxies of instances ``plan`` no longer has, while their namespaces still exist."""
        with self._lock:
            keep = {names.slb_netns(self.emulation, lb.name) for lb in slb_render.live(plan)}
            for netns in list(self._proxies):
                if netns not in keep:
                    self._stop_proxy(netns)

    def _render(self, lb: PlannedLoadBalancer) -> str:
        # Health is per listener: a backend down on one listener stays in the others' maps.
        down = {li.key: self.unhealthy(lb.name, li.key) for li in lb.listeners}
        return slb_render.render_slb_table(lb, self.emulation, down)

    def load(
        self, plan: Plan, current: Callable[[], Plan | None] | None = None, source: Plan | None = None
    ) -> int:
        """Makes the SLB tables, proxies and checks match ``plan``; returns how many tables and proxies
        were (re)loaded.

        ``current`` gives the engine's newest plan later on: readiness moves Local Services' backends.
        ``source`` is the engine's plan ``plan`` derives from (a drain: the plan in place with leaving
        pods terminating), so that the readiness watch does not load the plan in place over it."""
        with self._lock:
            if current is not None:
                self._current = current
            # What the engine handed over, before readiness refreshed its backends.
            self._source = source if source is not None else plan
            plan = refresh_service_backends(plan)
            self._plan = plan
            for lb in plan.load_balancers:
                # The cloud controller's events (a bad annotation, no backend): each reported once.
                if lb.events != self._reported.get(lb.name, ()):
                    for event in lb.events:
                        if event not in self._reported.get(lb.name, ()):
                            self._event("event", f"slb/{lb.name}", event)
                    self._reported[lb.name] = lb.events
            lbs = {lb.name: lb for lb in slb_render.live(plan)}
            before = set(self._lbs)
            self._lbs = lbs
            # Health state of backends that went away is forgotten; a backend that comes back is new.
            wanted_keys = {
                (lb.name, li.key, slb_render.backend_key(b))
                for lb in lbs.values()
                for li in lb.listeners
                for b in li.backends
            }
            for key in list(self._states):
                if key not in wanted_keys:
                    del self._states[key]
            wlc_keys = {(lb.name, li.key) for lb in lbs.values() for li in slb_render.wlc_listeners(lb)}
            for pair in set(self._wlc_ids) - wlc_keys:
                del self._wlc_ids[pair]
            for pair in set(self._wlc_counts) - wlc_keys:
                del self._wlc_counts[pair]
            changes = 0
            wanted = {names.slb_netns(self.emulation, lb.name): lb for lb in lbs.values()}
            table = slb_render.table_name(self.emulation)
            for netns, lb in sorted(wanted.items()):
                text = self._render(lb)
                if self._tables.get(netns) != text:
                    nftables.load_script(netns, slb_render.replace_script(text, self.emulation), table)
                    self._tables[netns] = text
                    changes += 1
                    # The whole table came with wrr shares: the next wlc reading loads its maps again.
                    for loaded in [k for k in self._wlc_loaded if k[0] == netns]:
                        del self._wlc_loaded[loaded]
            for netns in set(self._tables) - wanted.keys():
                del self._tables[netns]
            for netns in set(self._proxies) - wanted.keys():
                self._stop_proxy(netns)
            for lb in sorted(lbs.values(), key=lambda lb: lb.name):
                try:
                    changes += self._sync_proxy(lb)
                except AcknetError as exc:  # one instance's proxy does not stop the others
                    self._event("failed", f"slb/{lb.name}", str(exc))
            vrouters = slb_render.render_vrouter_tables(plan, self.emulation)
            for netns, text in sorted(vrouters.items()):
                if self._vrouter_tables.get(netns) != text:
                    nftables.load_script(
                        netns, slb_render.replace_script(text, self.emulation, "inet"), table
                    )
                    self._vrouter_tables[netns] = text
                    changes += 1
            for netns in set(self._vrouter_tables) - vrouters.keys():
                with contextlib.suppress(DataplaneError):  # its VPC may be gone with the table
                    nftables.delete_table(netns, "inet", table)
                del self._vrouter_tables[netns]
            sinks = {
                (names.slb_netns(self.emulation, lb.name), str(lb.address), li.port)
                for lb in lbs.values()
                for li in slb_render.layer4(lb)
                if li.protocol == "tcp"
            }
            gone = {names.slb_netns(self.emulation, n) for n in before - lbs.keys()}
            future = asyncio.run_coroutine_threadsafe(
                self._configure(targets_of(plan, self.emulation), sinks, gone), self._loop
            )
            future.result(timeout=30)
            return changes

    def health(self) -> dict[str, dict[str, dict[slb_render.BackendKey, bool]]]:
        """Load balancer -> listener -> backend -> healthy, for ``acknet get slb``."""
        out: dict[str, dict[str, dict[slb_render.BackendKey, bool]]] = {}
        for lb in self._lbs.values():
            for li in lb.listeners:
                down = self.unhealthy(lb.name, li.key)
                out.setdefault(lb.name, {})[li.key] = {
                    slb_render.backend_key(b): slb_render.backend_key(b) not in down for b in li.backends
                }
        return out

    def dropped(self) -> dict[str, dict[str, int]]:
        """Load balancer -> listener -> new connections dropped over its ``connectionRateLimit``."""
        out: dict[str, dict[str, int]] = {}
        for lb in list(self._lbs.values()):
            limited = [li for li in slb_render.layer4(lb) if li.connection_rate_limit is not None]
            if not limited:
                continue
            try:
                text = nftables.list_ruleset(names.slb_netns(self.emulation, lb.name))
            except DataplaneError:
                continue
            counts = {m[1]: int(m[2]) for m in _COUNTER.finditer(text)}
            out[lb.name] = {li.key: counts.get(f"over_{slb_render.map_name(li)}", 0) for li in limited}
        return out

    def stop(self) -> None:
        """Ends the checks and the handshake sockets; the proxies keep running (a restarted daemon adopts
        them, ``down`` ends them by their pid files) but are no longer started or revived."""
        with self._lock:
            self._stopped = True

        async def shutdown() -> None:
            for task in self._tasks.values():
                task.cancel()
            for server in self._sinks.values():
                server.close()
            self._tasks.clear()
            self._sinks.clear()

        if self._loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
