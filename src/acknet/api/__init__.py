"""api: the REST transport between the ``acknet`` command and the daemon — JSON over HTTP on a unix
socket in the emulation's state folder. Server and client; the daemon supplies the handlers. A thin
edge: no business logic."""
