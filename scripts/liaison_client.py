"""Python client plumbing shared by the demo and the compose scenarios: compiles the contract in
protos/ with grpcio-tools into a temporary folder (nothing generated is kept in the repo for
Python) and offers channel helpers. Import it from a script in this folder or Tests/compose."""
import json, os, sys, tempfile, uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def load_stubs():
    """Generates the Python stubs of every .proto under protos/ and puts them on sys.path."""
    out = tempfile.mkdtemp(prefix="liaison-py-")
    protos = []
    for d, _, files in os.walk(os.path.join(ROOT, "protos")):
        protos += [os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "protos")) for f in files if f.endswith(".proto")]
    from grpc_tools import protoc
    import grpc_tools
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", "-I" + os.path.join(ROOT, "protos"), "-I" + include,
                      "--python_out=" + out, "--grpc_python_out=" + out] + protos)
    if rc != 0:
        sys.exit("cannot compile the protos")
    sys.path.insert(0, out)

def request_id(*parts):
    """A request_id (UUID) derived from a name: the same name gives the same id, so a retry replays."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "liaison/" + "/".join(parts)))

def balanced_channel(target, service):
    """A channel that spreads calls over every address of `target` (round_robin), skips replicas
    whose health says `service` is NOT_SERVING (a replica that is shutting down says so before it
    stops accepting) and retries UNAVAILABLE calls of `service` on another replica, as the
    services' own clients do."""
    import grpc
    config = {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": service},
        "methodConfig": [{
            "name": [{"service": service}],
            "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "1s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
        }],
    }
    return grpc.insecure_channel(target, options=[("grpc.service_config", json.dumps(config)),
                                                  ("grpc.enable_retries", 1)])
