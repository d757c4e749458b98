"""analysis: reachability from the model's semantics — routing, security groups, Services, SLB,
policies — independently of the nftables compiler; hop-by-hop traces naming the deciding rule; probe
result comparison. Never imports the data plane and never touches the kernel."""
