"""Calico kinds (projectcalico.org/v3): policies, global policies and network sets.

Field names and defaults follow projectcalico/api ``policy_common.go`` and ``networkpolicy.go``;
selectors stay text here and are parsed by ``selectors`` during validation.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from acknet.model.base import CalicoResource, CalicoSchema

Action = Literal["Allow", "Deny", "Log", "Pass"]
PolicyType = Literal["Ingress", "Egress"]


class ICMPFields(CalicoSchema):
    type: int | None = None
    code: int | None = None


class ServiceAccountMatch(CalicoSchema):
    names: list[str] = Field(default_factory=list)
    selector: str = ""


class ServiceMatch(CalicoSchema):
    name: str
    namespace: str = ""


class EntityRule(CalicoSchema):
    nets: list[str] = Field(default_factory=list)
    not_nets: list[str] = Field(default_factory=list)
    selector: str = ""
    not_selector: str = ""
    namespace_selector: str = ""
    ports: list[int | str] = Field(default_factory=list)
    not_ports: list[int | str] = Field(default_factory=list)
    service_accounts: ServiceAccountMatch | None = None
    services: ServiceMatch | None = None


class HTTPMatch(CalicoSchema):
    methods: list[str] = Field(default_factory=list)
    paths: list[dict[str, str]] = Field(default_factory=list)


class RuleMetadata(CalicoSchema):
    annotations: dict[str, str] = Field(default_factory=dict)


class Rule(CalicoSchema):
    action: Action
    ip_version: Literal[4, 6] | None = None
    protocol: int | str | None = None
    not_protocol: int | str | None = None
    icmp: ICMPFields | None = None
    not_icmp: ICMPFields | None = Field(default=None, alias="notICMP")
    source: EntityRule = Field(default_factory=EntityRule)
    destination: EntityRule = Field(default_factory=EntityRule)
    http: HTTPMatch | None = None
    metadata: RuleMetadata | None = None


class CalicoPolicySpec(CalicoSchema):
    tier: str = "default"
    order: float | None = None
    selector: str = ""
    service_account_selector: str = ""
    types: list[PolicyType] | None = None
    ingress: list[Rule] = Field(default_factory=list)
    egress: list[Rule] = Field(default_factory=list)
    performance_hints: list[str] = Field(default_factory=list)

    def effective_types(self) -> tuple[str, ...]:
        """Calico's defaulting: [Ingress] unless there are only egress rules; both when both exist."""
        if self.types:
            return tuple(dict.fromkeys(self.types))
        if self.egress and self.ingress:
            return ("Ingress", "Egress")
        if self.egress:
            return ("Egress",)
        return ("Ingress",)


class GlobalPolicySpec(CalicoPolicySpec):
    namespace_selector: str = ""
    do_not_track: bool = False
    pre_dnat: bool = Field(default=False, alias="preDNAT")
    apply_on_forward: bool = False


class CalicoNetworkPolicy(CalicoResource):
    kind_name: ClassVar[str] = "NetworkPolicy"
    spec: CalicoPolicySpec = Field(default_factory=CalicoPolicySpec)


class GlobalNetworkPolicy(CalicoResource):
    kind_name: ClassVar[str] = "GlobalNetworkPolicy"
    namespaced: ClassVar[bool] = False
    spec: GlobalPolicySpec = Field(default_factory=GlobalPolicySpec)


class NetworkSetSpec(CalicoSchema):
    nets: list[str] = Field(default_factory=list)


class NetworkSet(CalicoResource):
    kind_name: ClassVar[str] = "NetworkSet"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)


class GlobalNetworkSet(CalicoResource):
    kind_name: ClassVar[str] = "GlobalNetworkSet"
    namespaced: ClassVar[bool] = False
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)
