"""dataplane.apply: the only code that changes the kernel (with observe, which reads it). Diff-based and
idempotent: pyroute2 netlink, whole nftables tables replaced in one transaction, processes in
namespaces. Decides no policy: it makes the rendered plan real, and says which object and operation
failed when the kernel refuses."""
