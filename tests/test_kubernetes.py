"""deploy/kubernetes and the Containerfile, checked offline: rendered by `kubectl kustomize`,
every object validated against the Kubernetes schemas (kubernetes-validate), and the pieces
checked against each other and against what the server accepts."""

from __future__ import annotations

import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

from cellbox import config, metrics
from cellbox.cluster.identity import parse_peers
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is installed by `make install` (Debian's kubernetes-client)"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents}


def test_every_manifest_is_valid_kubernetes(objects):
    assert set(objects) == {
        "StatefulSet/cellbox",
        "Service/cellbox-peers",
        "Service/cellbox",
        "PodDisruptionBudget/cellbox",
        "HorizontalPodAutoscaler/cellbox",
    }
    for name, document in objects.items():
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")


def _container(objects) -> dict:
    (container,) = objects["StatefulSet/cellbox"]["spec"]["template"]["spec"]["containers"]
    return container


def _env(container) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_nodes_are_the_statefulset_pods_and_find_each_other_by_dns(objects):
    statefulset = objects["StatefulSet/cellbox"]
    peers = objects["Service/cellbox-peers"]
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["serviceName"] == "cellbox-peers"
    assert peers["spec"]["clusterIP"] == "None"
    assert not peers["spec"].get("publishNotReadyAddresses")  # records = ready pods only
    for name in ("Service/cellbox-peers", "Service/cellbox"):
        assert objects[name]["spec"]["selector"].items() <= labels.items()
    assert objects["PodDisruptionBudget/cellbox"]["spec"]["selector"]["matchLabels"] == labels
    env = _env(_container(objects))
    assert env["CELLBOX_NODE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["CELLBOX_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cellbox-token"
    urls, names = parse_peers(env["CELLBOX_PEERS"]["value"])
    port = _container(objects)["ports"][0]["containerPort"]
    assert urls == [] and names == [("cellbox-peers", port)]
    assert peers["spec"]["ports"][0]["port"] == port


def test_the_server_accepts_the_pod_settings(objects):
    container = _container(objects)
    environ = {name: e["value"] for name, e in _env(container).items() if "value" in e}
    environ["CELLBOX_NODE_ID"] = "cellbox-0"  # what the fieldRef gives the first pod
    settings = config.load(environ=environ)
    assert settings.port == container["ports"][0]["containerPort"]
    assert settings.host == "0.0.0.0"
    assert container["args"] == ["serve"]


def test_probes_scrape_and_autoscaling(objects):
    container = _container(objects)
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz?ready=true"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["privileged"] is True
    # cellbox is not PID 1 of its container: the pause process reaps the orphans
    assert objects["StatefulSet/cellbox"]["spec"]["template"]["spec"]["shareProcessNamespace"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    annotations = objects["StatefulSet/cellbox"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
    hpa = objects["HorizontalPodAutoscaler/cellbox"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "cellbox",
    }
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == metrics.LIVE
    assert hpa["behavior"]["scaleDown"]["selectPolicy"] == "Disabled"  # would end contexts


def test_the_containerfile_installs_like_make_install(objects):
    lines = [
        line.strip()
        for line in (ROOT / "Containerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0].startswith("FROM debian:")
    assert "RUN make install && rm -rf /var/lib/apt/lists/* /root/.cache" in lines
    assert 'ENTRYPOINT ["/opt/cellbox/.venv/bin/cellbox"]' in lines
    assert f"EXPOSE {_container(objects)['ports'][0]['containerPort']}" in lines
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
