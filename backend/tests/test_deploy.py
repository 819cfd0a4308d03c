"""deploy/: the Kubernetes base and the Compose setup, checked offline with the real tools - the Kubernetes
schemas (kubernetes-validate), `nginx -t` and `promtool check config` - and against the server's own
settings, routes and metrics."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import nginx_config  # noqa: E402
from src.config.settings import Settings  # noqa: E402

K8S = REPO_ROOT / "deploy" / "kubernetes"
COMPOSE = REPO_ROOT / "deploy" / "compose"
DOCKERFILE = REPO_ROOT / "Dockerfile"
# The oldest Kubernetes release the base is meant for (native sidecar-free, autoscaling/v2, policy/v1)
# and the newest the schema package knows.
KUBE_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
REPLICAS = ("langshazam-1", "langshazam-2", "langshazam-3")


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _base() -> dict[str, dict]:
    """The base's resources by kind."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    found = {}
    for name in kustomization["resources"]:
        for doc in _docs(K8S / name):
            found[doc["kind"]] = doc
    return found


def _dockerfile_env(name: str) -> str:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    env = " ".join(line for line in text.splitlines() if line.startswith("ENV "))
    match = re.search(rf"\b{name}=(\S+)", env)
    assert match, f"no {name} in the Dockerfile"
    return match.group(1)


def _need(binary: str, package: str) -> str:
    found = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if Path(p).exists()), None)
    if not found:
        pytest.fail(f"{binary} is not installed: Debian package {package!r}, listed in scripts/system-deps.txt "
                    "(scripts/test.sh installs it when run as root)", pytrace=False)
    return found


# --- Kubernetes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", _k8s_files(), ids=lambda p: p.name)
def test_kubernetes_manifest_matches_the_schema(path):
    docs = _docs(path)
    assert docs, f"{path.name} holds no resource"
    for doc in docs:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_check_rejects_broken_manifests():
    deployment = _base()["Deployment"]
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_base_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    examples = {p.name for p in _k8s_files() if ".example." in p.name}
    assert listed == {p.name for p in _k8s_files()} - examples
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap"} <= set(_base())
    assert {"Secret", "Ingress"} == {doc["kind"] for name in examples for doc in _docs(K8S / name)}


def test_deployment_probes_shutdown_and_security():
    base = _base()
    deployment, config = base["Deployment"], base["ConfigMap"]["data"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = next(p for p in container["ports"] if p["name"] == "http")
    assert str(port["containerPort"]) == _dockerfile_env("PORT") == "10000"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}

    # preStop, then the readiness delay, then the drain: all within the grace period.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    budget = float(pre_stop[1]) + float(config["SHUTDOWN_READINESS_DELAY_SECONDS"]) + float(config["SHUTDOWN_GRACE_SECONDS"])
    assert float(config["SHUTDOWN_READINESS_DELAY_SECONDS"]) > 0
    assert pod["terminationGracePeriodSeconds"] > budget

    assert pod["securityContext"]["runAsNonRoot"] is True
    user = re.search(r"^USER\s+(\d+)", DOCKERFILE.read_text(), re.M)
    assert user and pod["securityContext"]["runAsUser"] == int(user.group(1))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    # The model is the one baked into the image, never written at start-up.
    assert config["MODEL_CACHE_DIR"] == _dockerfile_env("MODEL_CACHE_DIR")

    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]

    api_key = next(e for e in container["env"] if e["name"] == "API_KEY")
    assert api_key["valueFrom"]["secretKeyRef"]["name"] == "langshazam"
    assert container["envFrom"] == [{"configMapRef": {"name": base["ConfigMap"]["metadata"]["name"]}}]

    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics/prometheus"
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_configmap_holds_valid_settings():
    data = _base()["ConfigMap"]["data"]
    unknown = set(data) - set(Settings.model_fields)
    assert not unknown, f"not LangShazam settings: {sorted(unknown)}"
    assert "API_KEY" not in data  # from the Secret
    Settings(**{**data, "MODEL_CACHE_DIR": "/tmp"}).check()  # every value parses


def test_service_autoscaler_and_budget_select_the_deployment():
    base = _base()
    deployment = base["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = base["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    hpa = base["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert base["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_ingress_example_outlasts_a_session():
    (ingress,) = _docs(K8S / "ingress-nginx.example.yaml")
    annotations = ingress["metadata"]["annotations"]
    defaults = Settings.model_fields
    longest = max(defaults["MAX_AUDIO_SECONDS"].default, defaults["IDLE_TIMEOUT_SECONDS"].default)
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{name}"]) > longest
    assert "http_503" in annotations["nginx.ingress.kubernetes.io/proxy-next-upstream"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == _base()["Service"]["metadata"]["name"]


# --- Compose, nginx, Prometheus, Grafana ------------------------------------------------------------------

def _compose() -> dict:
    return yaml.safe_load((COMPOSE / "compose.yaml").read_text())


def test_compose_runs_three_replicas_behind_nginx_with_prometheus_and_grafana():
    services = _compose()["services"]
    assert set(services) == {*REPLICAS, "nginx", "prometheus", "grafana"}
    for name in REPLICAS:
        replica = services[name]
        env = replica["environment"]
        assert set(env) <= set(Settings.model_fields), set(env) - set(Settings.model_fields)
        assert "/ready" in " ".join(replica["healthcheck"]["test"])
        grace = float(env["SHUTDOWN_READINESS_DELAY_SECONDS"]) + float(env["SHUTDOWN_GRACE_SECONDS"])
        assert float(replica["stop_grace_period"].rstrip("s")) > grace
        assert replica["read_only"] is True and "/tmp" in replica["tmpfs"]
        assert services["nginx"]["depends_on"][name] == {"condition": "service_healthy"}
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).exists(), volume

    upstream = re.findall(r"^\s*server\s+(langshazam-\d+):(\d+)", (COMPOSE / "nginx.conf").read_text(), re.M)
    assert upstream == [(name, "10000") for name in REPLICAS]
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics/prometheus"
    assert job["static_configs"][0]["targets"] == [f"{name}:10000" for name in REPLICAS]


def test_nginx_config_passes_nginx_t(tmp_path):
    _need("nginx", "nginx")
    config = nginx_config.write([10001, 10002, 10003], 10000, tmp_path)
    text = config.read_text()
    assert "langshazam-" not in text and text.count("server 127.0.0.1:") == 3
    result = nginx_config.check(config)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr

    # ... and nginx -t does fail on a broken one.
    config.write_text(text.replace("least_conn;", "least_conn"))
    broken = nginx_config.check(config)
    assert broken.returncode != 0 and "nginx" in broken.stderr


def test_prometheus_config_passes_promtool(tmp_path):
    promtool = _need("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "config", str(COMPOSE / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "prometheus.yml"
    broken.write_text((COMPOSE / "prometheus.yml").read_text().replace("scrape_interval: 5s", "scrape_interval: often"))
    result = subprocess.run([promtool, "check", "config", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_grafana_dashboard_queries_metrics_the_server_exports(server):
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "langshazam.json").read_text())
    datasource = yaml.safe_load((COMPOSE / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert all(panel["datasource"]["uid"] == uid for panel in dashboard["panels"])
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("connections", "detections per second", "p95", "queue", "rejections", "language", "cpu", "memory"):
        assert topic in titles, topic

    # Every series the server declares (a labelled counter has no sample until its first event).
    suffixes = {"histogram": ("_bucket", "_sum", "_count")}  # counters are declared with their _total
    text = server.get("/metrics/prometheus").text
    exported = {name + suffix for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
                for suffix in suffixes.get(kind, ("",))}
    used = {name for expr in exprs for name in re.findall(r"\b((?:langshazam|process)_[a-z_]+)", expr)}
    assert used and used <= exported, f"not exported by the server: {sorted(used - exported)}"
