"""observe: reads the kernel back (namespaces, links, routes, nftables) and sends real probe traffic.
Touches the kernel but never changes what acknet built."""
