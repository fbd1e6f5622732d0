"""Offline checks of the deployment files: Kubernetes manifests (structure and the rules the
operators rely on) and the compose file (scaling correlation needs no fixed port or name)."""
import glob, os, shutil, subprocess
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
SERVICES = {"intake": 50051, "correlation": 50052, "sla": 50053, "communications": 50054, "followup": 50055}


def docs(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_kustomization_lists_every_manifest():
    k = docs("kustomization.yaml")[0]
    listed = set(k["resources"])
    present = {os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))} - {"kustomization.yaml"}
    assert listed == present


def test_each_service_deployment_is_hardened_and_probed():
    for name, port in SERVICES.items():
        kinds = {d["kind"]: d for d in docs(f"{name}.yaml")}
        dep, svc = kinds["Deployment"], kinds["Service"]
        assert dep["apiVersion"] == "apps/v1" and svc["apiVersion"] == "v1"
        pod = dep["spec"]["template"]["spec"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["readinessProbe"]["grpc"]["port"] == port  # native gRPC health probe
        assert c["startupProbe"]["grpc"]["port"] == port
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["resources"]["requests"] and c["resources"]["limits"]
        env = {e["name"]: e for e in c["env"]}
        assert env["LIAISON_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"liaison-{name}-db"
        assert c["args"] == [name, "serve"]
        assert {p["port"] for p in svc["spec"]["ports"]} >= {port}


def test_correlation_scales_out():
    kinds = {d["kind"]: d for d in docs("correlation.yaml")}
    assert kinds["Service"]["spec"]["clusterIP"] == "None"  # headless: clients balance across pods
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == "correlation"
    assert kinds["PodDisruptionBudget"]["spec"]["minAvailable"] >= 1
    env = {e["name"] for e in kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "LIAISON_MAX_CONNECTION_AGE_SECONDS" in env
    for other in ("intake", "sla", "communications", "followup"):
        dep = [d for d in docs(f"{other}.yaml") if d["kind"] == "Deployment"][0]
        targets = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert targets["LIAISON_CORRELATION_TARGET"].startswith("dns:///")


def test_compose_lets_correlation_scale():
    with open(os.path.join(ROOT, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert "name" not in compose
    corr = services["correlation"]
    assert "container_name" not in corr and "ports" not in corr
    for name in SERVICES:
        assert services[name]["healthcheck"]["test"][1:3] == [name, "probe"]
        assert services[f"{name}-db"]["healthcheck"]["test"][1] == "pg_isready"
        dep = services[name]["depends_on"][f"{name}-db"]["condition"]
        assert dep == "service_healthy"
        if name != "correlation":
            assert services[name]["environment"].get("LIAISON_CORRELATION_TARGET", "dns:///correlation:50052") == "dns:///correlation:50052"


def kustomize_build():
    """The manifests as `kubectl apply -k deploy/k8s` would send them: kubectl's own kustomize when
    kubectl is installed, else the same expansion in Python (resources in order, the namespace set
    on every namespaced object), which this kustomization is limited to."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        out = subprocess.run([kubectl, "kustomize", K8S], check=True, capture_output=True, text=True).stdout
        return [d for d in yaml.safe_load_all(out) if d], "kubectl kustomize"
    k = docs("kustomization.yaml")[0]
    assert set(k) <= {"apiVersion", "kind", "namespace", "resources"}, "extend the Python expansion"
    objects = []
    for r in k["resources"]:
        for d in docs(r):
            if d["kind"] != "Namespace":
                d.setdefault("metadata", {})["namespace"] = k["namespace"]
            objects.append(d)
    return objects, "python expansion"


def test_manifests_build_and_match_the_kubernetes_schema():
    import kubernetes_validate
    objects, how = kustomize_build()
    print(f"built with {how}: {len(objects)} objects")
    kinds = sorted(d["kind"] for d in objects)
    assert kinds.count("Deployment") == 5 and kinds.count("Service") == 5
    assert "HorizontalPodAutoscaler" in kinds and "PodDisruptionBudget" in kinds
    for d in objects:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "liaison"
        # Strict: unknown fields are errors, against the oldest Kubernetes we support.
        kubernetes_validate.validate(d, "1.29.0", strict=True)
