"""Make a ``KernelPlan`` real with netlink, diff-based and idempotent, without touching the host.

Safety: nothing here ever changes the namespace the process runs in. Namespaces are created by a
short-lived thread that unshares its own network namespace and bind-mounts it under /run/netns
(what ``ip netns add`` does, minus the process); every other change goes through a netlink socket
that was opened inside the target namespace, or through /proc/sys written by a thread that has
joined the target namespace and checked that it did. veths are created with their peer already in
its namespace, so no end ever appears in the host.

Speed: one netlink socket per namespace for the whole apply, requests encoded by ``rtnl`` (no
pyroute2 on the hot path), no process per object, the ifindex of each link we create chosen by us,
namespaces made by a small pool of threads that also set their sysctls and bring lo up, veths with
one queue each way. On two CPUs a 1,000-pod Terway plan applies in about 1.5 s, two thirds of it the
kernel making namespaces (bench/bringup.py compares it with bare namespaces made in the same run).

Trust: ``previous`` says what an earlier apply made, but a namespace may have been deleted (and made
again under its name) since, taking its veths and their other ends along. Each namespace's identity
is recorded when it is made or adopted and checked before a diff, so such a namespace is built again.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, TypeVar

from acknet.dataplane.apply.rtnl import NetlinkError, RtnlSocket
from acknet.dataplane.render import names
from acknet.dataplane.render.kernel import (
    Address,
    Bridge,
    Fdb,
    KernelPlan,
    Link,
    Namespace,
    Neighbour,
    PlanDiff,
    Route,
    Rule,
    Veth,
    VethEnd,
    Vxlan,
    diff_plans,
    sysctl_device,
)
from acknet.errors import DataplaneError

NETNS_RUN_DIR: Final = "/run/netns"
_CLONE_NEWNET: Final = 0x40000000
_MS_BIND: Final = 4096
_MS_REC: Final = 16384
_MS_SHARED: Final = 1 << 20
_MNT_DETACH: Final = 2
_NETLINK_ROUTE: Final = 0
_NUD_PERMANENT: Final = 0x80
_NTF_SELF: Final = 0x02  # an FDB entry of the device itself (a VXLAN's), not of a bridge it is a port of
_RTNH_F_ONLINK: Final = 4
_SCOPES: Final = {"global": 0, "link": 253, "host": 254}
# Deleting what is already gone is success: apply converges, it does not insist on the path.
_GONE: Final = frozenset({errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL})

# Namespaces created at once: on 2 CPUs, 4 make 1.9x as many per second as 1, and 8 fewer than 4.
_NETNS_WORKERS: Final = min(4, 2 * (os.cpu_count() or 1))

# linux/nsfs.h: which kind of namespace an nsfs file is (Linux 4.11), and the namespace's 64-bit id,
# never handed out twice while the machine runs (recent kernels; older ones answer ENOTTY).
_NS_GET_NSTYPE: Final = 0xB703
_NS_GET_ID: Final = 0x8008B70D

_libc = ctypes.CDLL(None, use_errno=True)
# Writing some sysctls (disable_ipv6, forwarding) takes the RTNL lock with rtnl_trylock() and, while
# another thread holds it, restarts the system call: it spins rather than sleeps. Threads making
# namespaces at once then spend the CPUs spinning against each other's lo-up and sysctls, and the
# holder waits for a CPU. So our threads take turns for those steps (on two busy CPUs, paired runs
# made a quarter to a half more namespaces a second); unshare, mount and the rest run side by side.
_rtnl_turn = threading.Lock()
_run_dir_ready = threading.Event()
_run_dir_lock = threading.Lock()

T = TypeVar("T")


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread and return its result. The thread ends with it, namespace and all."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="acknet-netns", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def _join_netns(fd: int) -> None:
    """Move the calling thread (never the main thread) into the namespace ``fd`` and prove it."""
    assert threading.current_thread() is not threading.main_thread()
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        raise _os_error("setns")
    if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(fd).st_ino:
        raise OSError(errno.EINVAL, "setns did not move the thread into the namespace")


_IPV6_DISABLE_ALL: Final = "net.ipv6.conf.all.disable_ipv6"
_IPV6_DISABLE_DEFAULT: Final = "net.ipv6.conf.default.disable_ipv6"


def _write_sysctls(sysctls: Iterable[tuple[str, str]]) -> None:
    # /proc/sys/net resolves against the namespace of the calling thread.
    written: dict[str, str] = {}
    for key, value in sysctls:
        if key == _IPV6_DISABLE_DEFAULT and written.get(_IPV6_DISABLE_ALL) == value:
            continue  # the kernel set it with conf.all (addrconf_disable_ipv6): one write less a namespace
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
        written[key] = value


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)


def _ensure_run_dir() -> None:
    """/run/netns as a shared mount point, as iproute2 sets it up, so namespaces show in other mounts."""
    with _run_dir_lock:
        if _run_dir_ready.is_set():
            return
        os.makedirs(NETNS_RUN_DIR, exist_ok=True)
        path = NETNS_RUN_DIR.encode()
        if _libc.mount(b"", path, b"none", _MS_SHARED | _MS_REC, None) != 0:
            if _libc.mount(path, path, b"none", _MS_BIND | _MS_REC, None) != 0:
                raise _os_error(f"bind {NETNS_RUN_DIR}")
            if _libc.mount(b"", path, b"none", _MS_SHARED | _MS_REC, None) != 0:
                raise _os_error(f"share {NETNS_RUN_DIR}")
        _run_dir_ready.set()


def _netns_path(name: str) -> str:
    return os.path.join(NETNS_RUN_DIR, name)


def list_netns(prefix: str = "") -> list[str]:
    """The named namespaces whose name starts with ``prefix``, sorted."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


NamespaceId = tuple[int, ...]

# The identity of every namespace an apply of this process made or adopted, by name. An apply that
# starts from ``previous`` trusts it only for namespaces that are still the ones recorded here:
# a namespace deleted (and perhaps made again under its name) since has lost its links, and every
# veth with an end in it has lost the other end too.
_made: dict[str, NamespaceId] = {}


def _identity_of_fd(fd: int) -> NamespaceId | None:
    """What tells the namespace open at ``fd`` from any other that had or will have its name; None
    when ``fd`` is no network namespace (a mount point left by a crash between create and mount).

    The kernel's namespace id where it has one. Else the nsfs inode with the time it was made: the
    inode number alone comes back as soon as its namespace is freed, but a namespace bound under
    /run/netns keeps its inode, and a new one gets a new inode and a later time.
    """
    try:
        if fcntl.ioctl(fd, _NS_GET_NSTYPE) != _CLONE_NEWNET:
            return None
    except OSError:
        return None
    try:
        buf = fcntl.ioctl(fd, _NS_GET_ID, bytes(8))
        return (int.from_bytes(buf, sys.byteorder),)
    except OSError:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino, st.st_ctime_ns)


def _identity(name: str) -> NamespaceId | None:
    try:
        fd = os.open(_netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _identity_of_fd(fd)
    finally:
        os.close(fd)


def _still_made(previous: KernelPlan) -> KernelPlan:
    """``previous`` less every namespace that is gone or no longer the one this process recorded,
    with everything in it and every veth with an end there, so that the diff makes them again.

    A namespace with no record (``previous`` came from elsewhere) is trusted if it exists.
    """
    stale = set()
    for ns in previous.namespaces:
        now = _identity(ns.name)
        known = _made.get(ns.name)
        if now is None or (known is not None and now != known):
            stale.add(ns.name)
            _made.pop(ns.name, None)
    if not stale:
        return previous
    return KernelPlan(
        namespaces=tuple(n for n in previous.namespaces if n.name not in stale),
        links=tuple(lk for lk in previous.links if not any(ns in stale for ns, _ in lk.devices)),
        addresses=tuple(a for a in previous.addresses if a.namespace not in stale),
        routes=tuple(r for r in previous.routes if r.namespace not in stale),
        rules=tuple(r for r in previous.rules if r.namespace not in stale),
        neighbours=tuple(n for n in previous.neighbours if n.namespace not in stale),
        fdbs=tuple(f for f in previous.fdbs if f.namespace not in stale),
    )


@dataclass(slots=True)
class _Session:
    """One namespace during one apply: its fd, a netlink socket opened inside it, its ifindexes.

    ``index`` is complete: dumped when the session opens and kept up to date by every link this
    apply adds or deletes (a veth's peer is recorded in the peer's session), so a name missing from
    it is a link that does not exist, and no lookup is ever sent. ``next_index`` stays above every
    index in the namespace, so the indexes we choose never collide.
    """

    name: str
    fd: int
    nl: RtnlSocket
    index: dict[str, int] = field(default_factory=dict)
    next_index: int = 2
    _ipr: _Pyroute2 | None = None

    @property
    def ipr(self) -> _Pyroute2:
        """pyroute2, for requests ``rtnl`` does not encode: opened inside the namespace on first use."""
        if self._ipr is None:
            self._ipr = _Pyroute2(_socket_in(self.fd))
        return self._ipr

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
        self.nl.close()
        os.close(self.fd)

    def ifindex(self, dev: str) -> int | None:
        return self.index.get(dev)

    def take_index(self) -> int:
        self.next_index += 1
        return self.next_index - 1


class _Pyroute2:
    """pyroute2's IPRoute on a socket of one namespace, for VXLAN devices and FDB entries only.

    Imported on first use: importing pyroute2 takes a tenth of a second or more, which every ``acknet``
    command and the daemon's start paid for a Flannel VXLAN backend most emulations never have. Its
    NetlinkError becomes ``rtnl``'s, so callers catch one type.
    """

    def __init__(self, sock: socket.socket) -> None:
        from pyroute2 import IPRoute

        self._ipr = IPRoute(use_socket=sock, groups=0)

    def close(self) -> None:
        self._ipr.close()

    def link(self, command: str, **kwargs: Any) -> Any:
        return self._call(self._ipr.link, command, **kwargs)

    def fdb(self, command: str, **kwargs: Any) -> Any:
        return self._call(self._ipr.fdb, command, **kwargs)

    @staticmethod
    def _call(request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error

        try:
            return request(*args, **kwargs)
        except Pyroute2Error as exc:
            raise NetlinkError(exc.code, str(exc)) from exc


def _socket_in(fd: int) -> socket.socket:
    """A netlink socket that lives in the namespace ``fd`` (made by a thread that joined it)."""

    def open_socket() -> socket.socket:
        _join_netns(fd)
        return _netlink_socket()

    return _in_thread(open_socket)


def _open_session(name: str, sock: socket.socket | None = None, fresh: bool = False) -> _Session:
    """A session on ``name``; ``fresh``: the namespace was just made, only ``lo`` (index 1) is there."""
    fd = os.open(_netns_path(name), os.O_RDONLY)
    try:
        session = _Session(name, fd, RtnlSocket(sock if sock is not None else _socket_in(fd)))
    except BaseException:
        os.close(fd)
        raise
    session.index = {"lo": 1} if fresh else session.nl.links()
    session.next_index = max(session.index.values(), default=1) + 1
    return session


def _create_netns(ns: Namespace, home: int | None = None) -> _Session:
    """Create (or adopt) ``ns``, set its namespace-wide sysctls and bring lo up; return its session.

    With ``home`` (a handle on our own namespace) the calling thread is a worker of
    ``_Applier._create_namespaces`` that exists for this: it goes home, then unshares itself instead
    of starting a thread per namespace (starting threads was half of the cost). Going home first keeps
    a new namespace's inherited settings those of our namespace, whatever devconf_inherit_init_net says.
    """
    _ensure_run_dir()
    path = _netns_path(ns.name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        if _identity(ns.name) is not None:
            session = _open_session(ns.name)
            _record(session)
            _set_sysctls(session, [(k, v) for k, v in ns.sysctls if sysctl_device(k) is None])
            _link_up(session, "lo")
            return session
    global_sysctls = [(k, v) for k, v in ns.sysctls if sysctl_device(k) is None]

    def create() -> socket.socket:
        assert threading.current_thread() is not threading.main_thread()
        if _libc.unshare(_CLONE_NEWNET) != 0:
            raise _os_error("unshare")
        if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None) != 0:
            raise _os_error(f"bind {path}")
        # The thread now sits in the new namespace and nowhere else: its sysctls are the new ones.
        with _rtnl_turn:
            _write_sysctls(global_sysctls)
        return _netlink_socket()

    def create_here() -> socket.socket:
        assert home is not None
        _join_netns(home)
        return create()

    try:
        sock = _in_thread(create) if home is None else create_here()
    except OSError as exc:
        _remove_netns(ns.name)
        raise DataplaneError("create namespace", ns.name, exc.errno) from exc
    session = _open_session(ns.name, sock, fresh=True)
    _record(session)
    _link_up(session, "lo")
    return session


def _record(session: _Session) -> None:
    identity = _identity_of_fd(session.fd)
    if identity is not None:
        _made[session.name] = identity


def _remove_netns(name: str) -> None:
    _made.pop(name, None)
    path = _netns_path(name)
    if _libc.umount2(path.encode(), _MNT_DETACH) != 0 and ctypes.get_errno() not in (
        errno.EINVAL,
        errno.ENOENT,
    ):
        err = ctypes.get_errno()
        raise DataplaneError("unmount namespace", name, err)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DataplaneError("remove namespace", name, exc.errno) from exc


def _set_sysctls(session: _Session, sysctls: list[tuple[str, str]]) -> None:
    if not sysctls:
        return

    def write() -> None:
        _join_netns(session.fd)
        with _rtnl_turn:
            _write_sysctls(sysctls)

    try:
        _in_thread(write)
    except OSError as exc:
        raise DataplaneError("set sysctls", f"{sysctls} in {session.name}", exc.errno) from exc


def _link_up(session: _Session, dev: str) -> None:
    index = session.ifindex(dev)
    if index is not None:
        with _rtnl_turn:
            session.nl.set_link(index)


class _Applier:
    """Holds one session per namespace for the duration of one apply."""

    def __init__(self) -> None:
        self.sessions: dict[str, _Session] = {}

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()

    def session(self, name: str) -> _Session | None:
        if name not in self.sessions:
            if not os.path.exists(_netns_path(name)):
                return None
            self.sessions[name] = _open_session(name)
        return self.sessions[name]

    def need(self, name: str, what: str) -> _Session:
        session = self.session(name)
        if session is None:
            raise DataplaneError(what, f"namespace {name}", errno.ENOENT)
        return session

    # -- removal -----------------------------------------------------------------------------------

    def remove(self, diff: PlanDiff) -> None:
        for f in diff.remove_fdbs:
            self._quiet_delete(f.namespace, "delete fdb entry", f, partial(_fdb, cmd="del", obj=f))
        for n in diff.remove_neighbours:
            self._quiet_delete(n.namespace, "delete neighbour", n, partial(_neigh, cmd="del", obj=n))
        for r in diff.remove_rules:
            self._quiet_delete(r.namespace, "delete rule", r, partial(_rule, cmd="del", obj=r))
        for rt in diff.remove_routes:
            self._quiet_delete(rt.namespace, "delete route", rt, partial(_route, cmd="del", obj=rt))
        for a in diff.remove_addresses:
            self._quiet_delete(a.namespace, "delete address", a, partial(_addr, cmd="del", obj=a))
        for link in diff.remove_links:
            # A veth goes with either end; try the other one when the first namespace is already gone.
            for ns, dev in link.devices:
                session = self.session(ns)
                if session is not None and self._delete_link(session, dev, link):
                    break
        for namespace in diff.remove_namespaces:
            if namespace.name in self.sessions:
                self.sessions.pop(namespace.name).close()
            _remove_netns(namespace.name)

    def _delete_link(self, session: _Session, dev: str, link: Link) -> bool:
        index = session.ifindex(dev)
        if index is None:
            return False
        try:
            session.nl.delete_link(index)
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise DataplaneError("delete link", _describe(link), exc.code) from exc
        session.index.pop(dev, None)
        if isinstance(link, Veth):
            for ns, name in link.devices:  # the other end went with it
                other = self.sessions.get(ns)
                if other is not None and (ns, name) != (session.name, dev):
                    other.index.pop(name, None)
        return True

    def _quiet_delete(self, ns: str, op: str, obj: object, fn: Callable[[_Session], None]) -> None:
        session = self.session(ns)
        if session is None:
            return
        try:
            fn(session)
        except _NoDevice:
            pass
        except NetlinkError as exc:
            if exc.code not in _GONE:
                raise DataplaneError(op, _describe(obj), exc.code) from exc

    # -- creation ----------------------------------------------------------------------------------

    def add(self, diff: PlanDiff) -> None:
        # Namespaces first, all of them: making links while the pool still creates namespaces gains
        # nothing, both wait for the same RTNL lock (and disable_ipv6 spins on it).
        self._create_namespaces(diff.add_namespaces)
        for link in diff.add_links:
            if isinstance(link, Bridge):
                self._bridge(link)
        for link in diff.add_links:
            if isinstance(link, Veth):
                self._veth(link)
        for link in diff.add_links:
            if isinstance(link, Vxlan):  # after the veths: its underlay must exist
                self._vxlan(link)
        by_ns: dict[str, list[tuple[str, str]]] = {}
        for ns_name, key, value in diff.set_sysctls:
            by_ns.setdefault(ns_name, []).append((key, value))
        for ns_name, sysctls in by_ns.items():
            _set_sysctls(self.need(ns_name, "set sysctls"), sysctls)
        for a in diff.add_addresses:
            self._do(a.namespace, "add address", a, partial(_addr, cmd="add", obj=a), tolerate=errno.EEXIST)
        # Routes without a gateway first: a gateway must be reachable when its route is added.
        for rt in sorted(diff.add_routes, key=lambda r: r.via is not None):
            self._do(rt.namespace, "add route", rt, partial(_route, cmd="replace", obj=rt))
        for r in diff.add_rules:
            self._do(r.namespace, "add rule", r, partial(_rule, cmd="add", obj=r), tolerate=errno.EEXIST)
        for n in diff.add_neighbours:
            self._do(n.namespace, "add neighbour", n, partial(_neigh, cmd="replace", obj=n))
        for f in diff.add_fdbs:
            self._do(f.namespace, "add fdb entry", f, partial(_fdb, cmd="replace", obj=f))

    def _create_namespaces(self, namespaces: Sequence[Namespace]) -> None:
        """Create namespaces a few at a time: most of their cost is the kernel's setup of a new
        namespace, which runs on every CPU at once."""
        if len(namespaces) < 2:
            for ns in namespaces:
                self.sessions[ns.name] = _create_netns(ns)
            return
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            # Its workers end in the last namespace they made; they run nothing but _create_netns.
            with ThreadPoolExecutor(_NETNS_WORKERS, thread_name_prefix="acknet-create") as pool:
                futures = [(ns.name, pool.submit(_create_netns, ns, home)) for ns in namespaces]
        finally:
            os.close(home)
        error: BaseException | None = None
        for name, future in futures:
            try:
                self.sessions[name] = future.result()
            except BaseException as exc:  # keep every session made, so close() releases it
                error = error or exc
        if error is not None:
            raise error

    def _do(
        self, ns: str, op: str, obj: object, fn: Callable[[_Session], None], tolerate: int | None = None
    ) -> None:
        session = self.need(ns, op)
        try:
            fn(session)
        except _NoDevice as exc:
            raise DataplaneError(op, _describe(obj), errno.ENODEV, f"no device {exc.args[0]}") from exc
        except NetlinkError as exc:
            if exc.code != tolerate:
                raise DataplaneError(op, _describe(obj), exc.code) from exc

    def _bridge(self, bridge: Bridge) -> None:
        session = self.need(bridge.namespace, "add bridge")
        existing = session.ifindex(bridge.name)
        try:
            if existing is None:
                index = session.take_index()
                session.nl.add_bridge(bridge.name, index, bridge.mac)
                session.index[bridge.name] = index
            else:
                session.nl.set_link(existing, mac=bridge.mac)
        except NetlinkError as exc:
            raise DataplaneError("add bridge", _describe(bridge), exc.code) from exc

    def _veth(self, veth: Veth) -> None:
        # Create from the end that is a bridge port, so the master goes in the same message; the
        # other end is created directly in its namespace (IFLA_NET_NS_FD on the peer).
        main, other = (
            (veth.peer, veth.end) if veth.peer.master and not veth.end.master else (veth.end, veth.peer)
        )
        ms = self.need(main.namespace, "add veth")
        os_ = self.need(other.namespace, "add veth")
        try:
            if ms.ifindex(main.name) is not None and os_.ifindex(other.name) is None:
                # Half a pair cannot be: a leftover from another plan, or the end that outlived a
                # namespace deleted behind our back. Replace it.
                _delete_leftover(ms, main.name)
            if ms.ifindex(main.name) is None:
                if os_.ifindex(other.name) is not None:
                    _delete_leftover(os_, other.name)
                # Both indexes are ours to choose, each from its own namespace's counter.
                index, peer_index = ms.take_index(), os_.take_index()
                master = self._master(ms, main) if main.master else None
                ms.nl.add_veth(main.name, index, main.mac, master, other.name, peer_index, other.mac, os_.fd)
                ms.index[main.name] = index
                os_.index[other.name] = peer_index
                # The peer is born down (and without a master): one request from its side.
                os_.nl.set_link(peer_index, master=self._master(os_, other) if other.master else None)
                if main.hairpin:
                    ms.nl.set_hairpin(index)
            else:
                self._ensure_end(ms, main)
                self._ensure_end(os_, other)
        except NetlinkError as exc:
            raise DataplaneError("add veth", _describe(veth), exc.code) from exc

    def _vxlan(self, vx: Vxlan) -> None:
        """Create ``vx``, or adopt an existing device when its VXLAN parameters match (else re-create it:
        the kernel changes none of them in place)."""
        session = self.need(vx.namespace, "add vxlan")
        data: dict[str, Any] = {
            "vxlan_id": vx.vni,
            "vxlan_local": str(vx.local),
            "vxlan_port": vx.port,
            "vxlan_learning": int(vx.learning),
        }
        spec: dict[str, Any] = {"state": "up"}
        if vx.mac:
            spec["address"] = vx.mac
        if vx.mtu:
            spec["mtu"] = vx.mtu
        try:
            if vx.underlay is not None:
                data["vxlan_link"] = _dev(session, vx.underlay)
            existing = session.ifindex(vx.name)
            if existing is not None:
                same = _vxlan_matches(session, existing, data)
                if same is None:  # the kernel deleted it with its underlay, earlier in this apply
                    session.index.pop(vx.name)
                    existing = None
                elif not same:
                    session.ipr.link("del", index=session.index.pop(vx.name))
                    existing = None
            if existing is None:
                index = session.take_index()
                session.ipr.link("add", ifname=vx.name, kind="vxlan", index=index, **data, **spec)
                session.index[vx.name] = index
            else:
                session.ipr.link("set", index=existing, **spec)
        except _NoDevice as exc:
            raise DataplaneError(
                "add vxlan", _describe(vx), errno.ENODEV, f"no device {exc.args[0]}"
            ) from exc
        except NetlinkError as exc:
            raise DataplaneError("add vxlan", _describe(vx), exc.code) from exc

    def _master(self, session: _Session, end: VethEnd) -> int:
        assert end.master is not None
        index = session.ifindex(end.master)
        if index is None:
            raise DataplaneError(
                "add veth", f"{end.name} in {end.namespace}", errno.ENODEV, f"no bridge {end.master}"
            )
        return index

    def _ensure_end(self, session: _Session, end: VethEnd) -> None:
        index = session.ifindex(end.name)
        if index is None:
            raise NetlinkError(errno.ENODEV, f"{end.name} missing in {end.namespace}")
        session.nl.set_link(index, mac=end.mac, master=self._master(session, end) if end.master else None)
        if end.hairpin:
            session.nl.set_hairpin(index)


def _delete_leftover(session: _Session, dev: str) -> None:
    """Delete a link that must go; gone already is fine: the kernel destroys a deleted namespace's
    veths, and their peers elsewhere, some time after it was unmounted."""
    try:
        session.nl.delete_link(session.index.pop(dev))
    except NetlinkError as exc:
        if exc.code not in _GONE:
            raise


class _NoDevice(Exception):
    """An object refers to an interface that does not exist in its namespace."""


def _dev(session: _Session, dev: str) -> int:
    index = session.ifindex(dev)
    if index is None:
        raise _NoDevice(dev)
    return index


_IFA_F_NOPREFIXROUTE = 0x200  # linux/if_addr.h


def _addr(session: _Session, cmd: str, obj: Address) -> None:
    a = obj
    flags = 0 if a.prefix_route or cmd == "del" else _IFA_F_NOPREFIXROUTE
    session.nl.address(cmd == "add", _dev(session, a.dev), a.address.ip, a.address.network.prefixlen, flags)


def _route(session: _Session, cmd: str, obj: Route) -> None:
    r = obj
    if cmd == "del":
        session.nl.delete_route(r.dst, r.table)
        return
    flags = _RTNH_F_ONLINK if r.onlink else 0
    session.nl.replace_route(r.dst, r.table, _dev(session, r.dev), _SCOPES[r.scope], r.via, flags)


def _rule(session: _Session, cmd: str, obj: Rule) -> None:
    r = obj
    session.nl.rule(cmd == "add", r.priority, r.table, r.src, r.dst, r.fwmark)


def _neigh(session: _Session, cmd: str, obj: Neighbour) -> None:
    n = obj
    session.nl.neighbour(cmd != "del", _dev(session, n.dev), n.address, n.mac, _NUD_PERMANENT)


def _vxlan_matches(session: _Session, index: int, data: dict[str, Any]) -> bool | None:
    """Whether the link at ``index`` is a VXLAN with these parameters; None when it is gone."""
    try:
        info = session.ipr.link("get", index=index)[0].get_attr("IFLA_LINKINFO")
    except NetlinkError as exc:
        if exc.code in _GONE:
            return None
        raise
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
        return False
    got = info.get_attr("IFLA_INFO_DATA")
    return all(got.get_attr(f"IFLA_{key.upper()}") == value for key, value in data.items())


def _fdb(session: _Session, cmd: str, obj: Fdb) -> None:
    f = obj
    session.ipr.fdb(
        cmd,
        ifindex=_dev(session, f.dev),
        lladdr=f.mac,
        dst=str(f.dst),
        state=_NUD_PERMANENT,
        flags=_NTF_SELF,
    )


def _describe(obj: object) -> str:
    if isinstance(obj, Veth):
        return f"veth {obj.end.name}@{obj.end.namespace} <-> {obj.peer.name}@{obj.peer.namespace}"
    if isinstance(obj, Bridge):
        return f"bridge {obj.name} in {obj.namespace}"
    if isinstance(obj, Vxlan):
        return f"vxlan {obj.name} id {obj.vni} local {obj.local} dstport {obj.port} in {obj.namespace}"
    if isinstance(obj, Fdb):
        return f"fdb entry {obj.mac} dst {obj.dst} dev {obj.dev} in {obj.namespace}"
    if isinstance(obj, Address):
        return f"address {obj.address} on {obj.dev} in {obj.namespace}"
    if isinstance(obj, Route):
        via = f" via {obj.via}" if obj.via else ""
        return f"route {obj.dst}{via} dev {obj.dev} table {obj.table} in {obj.namespace}"
    if isinstance(obj, Rule):
        return f"rule {obj.priority} from {obj.src or 'all'} to {obj.dst or 'all'} lookup {obj.table} in {obj.namespace}"
    if isinstance(obj, Neighbour):
        return f"neighbour {obj.address} lladdr {obj.mac} dev {obj.dev} in {obj.namespace}"
    return str(obj)


def apply_kernel_plan(kp: KernelPlan, previous: KernelPlan | None = None) -> PlanDiff:
    """Make ``kp`` real, starting from ``previous`` (what the last successful apply made).

    Objects of ``previous`` missing from ``kp`` are removed, new ones created, unchanged ones not
    touched; the same plan twice does nothing the second time. With ``previous`` None every object
    is ensured (existing ones adopted), which is how a restarted daemon converges. A namespace of
    ``previous`` that was deleted, or deleted and made again, since an apply of this process made it
    counts as never made: it is built again with its veths and what sits on their other ends. Returns
    the work done. Raises DataplaneError naming the operation, the object and the errno.
    """
    diff = diff_plans(None if previous is None else _still_made(previous), kp)
    if diff.empty:
        return diff
    applier = _Applier()
    try:
        applier.remove(diff)
        applier.add(diff)
    except NetlinkError as exc:
        raise DataplaneError("apply", "kernel plan", exc.code) from exc
    finally:
        applier.close()
    for ns in kp.namespaces:  # kept from a plan of another process: recorded as they are now
        if ns.name not in _made and (identity := _identity(ns.name)) is not None:
            _made[ns.name] = identity
    return diff


def remove_emulation(emulation: str) -> list[str]:
    """Delete every namespace of ``emulation``, knowing nothing but its name (the daemon may be dead).

    Veths always have both ends in the emulation's namespaces, so unmounting the namespaces removes
    every link, address, route and rule with them. Returns the names removed.
    """
    prefix = names.netns_prefix(emulation)
    removed = []
    for name in list_netns(prefix):
        _remove_netns(name)
        removed.append(name)
    return removed


def remove_namespace(name: str) -> None:
    """Deletes one namespace and, with it, every link, address, route and rule inside."""
    _remove_netns(name)
