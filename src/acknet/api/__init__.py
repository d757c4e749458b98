"""api: the daemon's REST API on a unix socket, and the client the command line uses. A thin edge."""
