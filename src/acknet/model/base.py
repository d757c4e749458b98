"""Common shape of every resource: apiVersion, kind, metadata, spec."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from acknet.model.diagnostics import Origin


class CloudSchema(BaseModel):
    """acknet.io kinds: the fields are those of DESIGN.md (Alibaba Cloud API names); anything else is an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class KubeSchema(BaseModel):
    """Kubernetes kinds: real manifests carry many fields acknet does not use; they are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)


class CalicoSchema(BaseModel):
    """Calico specs are validated as calicoctl does: an unknown field is a mistake, not decoration."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class ObjectMeta(KubeSchema):
    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class CloudMeta(CloudSchema):
    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Resource(BaseModel):
    """A top-level object. ``origin`` records the file and document it came from (None when acknet made it)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    api_group: ClassVar[str] = ""
    kind_name: ClassVar[str] = ""
    namespaced: ClassVar[bool] = False

    api_version: str = Field(alias="apiVersion")
    kind: str
    _origin: Origin | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return self.metadata_name()

    def metadata_name(self) -> str:
        raise NotImplementedError

    @property
    def origin(self) -> Origin | None:
        return self._origin

    def with_origin(self, origin: Origin | None) -> Self:
        self._origin = origin
        return self

    @property
    def ref(self) -> str:
        return self.kind_name + "/" + self.name


class CloudResource(Resource):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")
    api_group: ClassVar[str] = "acknet.io"
    metadata: CloudMeta

    def metadata_name(self) -> str:
        return self.metadata.name


class KubeResource(Resource):
    metadata: ObjectMeta
    namespaced: ClassVar[bool] = True

    def metadata_name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or "default"

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    @property
    def ref(self) -> str:
        if self.namespaced:
            return f"{self.kind_name}/{self.namespace}/{self.name}"
        return f"{self.kind_name}/{self.name}"


class CalicoResource(KubeResource):
    api_group: ClassVar[str] = "projectcalico.org"
