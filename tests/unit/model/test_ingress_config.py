"""The NGINX Ingress controller's ConfigMap (kube-system/nginx-configuration): the keys acknet implements,
ingress-nginx's defaults, and a warning for every key or value it cannot use (model/ingress_config.py)."""

from __future__ import annotations

import pytest

from acknet.model import defaults
from acknet.model.build import build_resources
from acknet.model.documents import Source
from acknet.model.ingress_config import DEFAULT, IngressNginxConfig, controller_config, read
from acknet.model.k8s import ConfigMap
from acknet.model.load import load_resources
from acknet.model.resources import KubeObjects

POD = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n"


def configmap(data: str, namespace: str = "kube-system", name: str = "nginx-configuration") -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\ndata: {data}\n"
    )


def cm(data: dict[str, str]) -> ConfigMap:
    return ConfigMap.model_validate(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "nginx-configuration", "namespace": "kube-system"},
            "data": data,
        }
    )


@pytest.mark.parametrize(
    ("data", "config", "warned"),
    [
        pytest.param({}, DEFAULT, [], id="empty-is-ingress-nginx-defaults"),
        pytest.param(
            {"use-forwarded-headers": "true"},
            IngressNginxConfig(use_forwarded_headers=True),
            [],
            id="forwarded",
        ),
        pytest.param(
            {"use-forwarded-headers": "True", "compute-full-forwarded-for": "1"},
            IngressNginxConfig(True, True),
            [],
            id="go-parsebool-spellings",
        ),
        pytest.param({"use-forwarded-headers": "false"}, DEFAULT, [], id="false"),
        pytest.param(
            {"use-forwarded-headers": "yes"}, DEFAULT, ["data.use-forwarded-headers"], id="not-a-boolean"
        ),
        pytest.param(
            {"use-forwarded-headers": "true", "proxy-real-ip-cidr": "10.0.0.0/8, 192.168.1.7"},
            IngressNginxConfig(True, False, ("10.0.0.0/8", "192.168.1.7/32")),
            [],
            id="real-ip-cidrs",
        ),
        pytest.param(
            {"proxy-real-ip-cidr": "10.0.0.0/33"}, DEFAULT, ["data.proxy-real-ip-cidr"], id="bad-cidr"
        ),
        pytest.param(
            {"compute-full-forwarded-for": "true"},
            IngressNginxConfig(False, True),
            ["data.compute-full-forwarded-for"],
            id="full-forwarded-for-alone-does-nothing",
        ),
        pytest.param(
            {"ssl-redirect": "false", "proxy-body-size": "20m"},
            DEFAULT,
            ["data.proxy-body-size", "data.ssl-redirect"],
            id="keys-acknet-does-not-implement",
        ),
    ],
)
def test_read(data: dict[str, str], config: IngressNginxConfig, warned: list[str]) -> None:
    got, problems = read(cm(data))
    assert got == config
    assert [p.field for p in problems] == warned
    assert all(not p.is_error and p.ref == "ConfigMap/kube-system/nginx-configuration" for p in problems)


def test_no_configmap_means_the_defaults() -> None:
    assert read(None) == (DEFAULT, [])
    assert controller_config(KubeObjects()) == DEFAULT


def test_the_controllers_configmap_is_kept_and_its_unknown_keys_reported() -> None:
    text = "---\n".join(
        [
            POD,
            configmap('{use-forwarded-headers: "true", worker-processes: "4"}'),
            configmap("{a: b}", "default", "app"),
        ]
    )
    loaded = load_resources([Source("files.yaml", text)])
    assert not loaded.errors
    messages = [str(d) for d in loaded.diagnostics]
    assert any("data.worker-processes" in m and "not implemented by acknet" in m for m in messages), messages
    assert any("ConfigMap/default/app" in m and "no effect on the network" in m for m in messages), messages
    objs = build_resources([Source("files.yaml", text)]).kube["ack"]
    assert set(objs.config_maps) == {defaults.INGRESS_CONFIGMAP}
    assert controller_config(objs).use_forwarded_headers


def test_a_value_that_is_not_a_string_is_an_error_with_its_field() -> None:
    """As the API server has it: ConfigMap data values are strings (quote true)."""
    loaded = load_resources(
        [Source("files.yaml", POD + "---\n" + configmap("{use-forwarded-headers: true}"))]
    )
    assert [(e.ref, e.field) for e in loaded.errors] == [
        ("ConfigMap/kube-system/nginx-configuration", "data.use-forwarded-headers")
    ]
