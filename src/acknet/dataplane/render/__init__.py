"""dataplane.render: pure functions from the planned state to a kernel plan — namespaces, links,
addresses, routes, rules, nftables tables, NGINX configs — as frozen, printable data. Never does I/O."""
