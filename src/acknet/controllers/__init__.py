"""controllers: pure reconcile steps that derive the planned state from the desired state.

Node pools become ECS nodes, Deployments become Pods, Terway/Flannel IPAM hands out ENIs and
addresses, Services get ClusterIPs and NodePorts, EndpointSlices follow pods. Deterministic for the
same input; given the previous plan, allocations stay where they were. Never touches the kernel.
"""
