"""Contract tests for the Liaison API, from Python.

Compiles every proto under protos/ with grpcio-tools (not the protoc the Swift
build uses), imports every generated module, checks each service exposes the
expected methods, checks the API conventions (request_id, paging, update_mask,
enum zero values, event headers) mechanically, and makes a real gRPC call over
a socket with a Python client and server generated from the contract,
including google.rpc error details in the status trailer.

Run: python3 -m pytest Tests/python/test_contract.py
Needs: pip install grpcio grpcio-tools pytest
"""

from __future__ import annotations

import importlib
import pathlib
import sys
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")
grpc_tools = pytest.importorskip("grpc_tools")
from grpc_tools import protoc  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTOS = REPO / "protos"

EXPECTED_METHODS = {
    "liaison.intake.v1.IntakeService": {
        "GetCustomer", "ListCustomers", "BatchUpsertCustomers", "UpdateCustomer",
        "SubmitReport", "BatchSubmitReports", "GetReport", "ListReports",
        "GetCase", "ListCases", "AssignCase", "MergeCases", "SplitCase",
        "CloseCase", "ReopenCase", "ListCaseHistory",
    },
    "liaison.correlation.v1.CorrelationService": {
        "CreateService", "GetService", "ListServices", "UpdateService", "DeleteService",
        "DeclareIncident", "GetIncident", "ListIncidents", "UpdateIncident",
        "AcknowledgeIncident", "MitigateIncident", "ResolveIncident", "ReopenIncident",
        "AttachPostmortem", "GetLink", "ListLinks", "LinkReports", "UnlinkReports",
        "ConfirmLink", "RejectLink", "GetBlastRadius", "GetIncidentTimeline",
        "WatchIncident", "GetEmergingIssue", "ListEmergingIssues",
        "PromoteEmergingIssue", "DismissEmergingIssue",
    },
    "liaison.sla.v1.SlaService": {
        "CreateContract", "GetContract", "ListContracts", "UpdateContract",
        "DeleteContract", "ActivateContract", "RetireContract", "GetEffectiveContract",
        "ListImpacts", "CreateImpact", "UpdateImpact", "GetBudgetStatus",
        "ListBudgetStatuses", "ListAtRiskCustomers", "RankRestorationPriorities",
        "RecommendSeverity", "GetBreach", "ListBreaches", "GetCredit", "ListCredits",
        "IssueCredit", "WaiveCredit",
    },
    "liaison.communications.v1.CommunicationsService": {
        "CreateTemplate", "GetTemplate", "ListTemplates", "UpdateTemplate",
        "DeleteTemplate", "PublishTemplate", "ArchiveTemplate", "ListTemplateRevisions",
        "ValidateTemplate", "RenderTemplate", "CreateAudience", "GetAudience",
        "ListAudiences", "UpdateAudience", "DeleteAudience", "ListAudienceMembers",
        "CreateAnnouncement", "GetAnnouncement", "ListAnnouncements",
        "UpdateAnnouncement", "ApproveAnnouncement", "SendAnnouncement",
        "CancelAnnouncement", "GetDelivery", "ListDeliveries", "CreateChannel",
        "GetChannel", "ListChannels", "UpdateChannel", "GetPublicStatus",
        "ListPublicIncidents",
    },
    "liaison.followup.v1.FollowupService": {
        "CreateTask", "GetTask", "ListTasks", "UpdateTask", "AssignTask", "StartTask",
        "CompleteTask", "CancelTask", "ListAttentionEntries",
    },
    "liaison.events.v1.EventSinkService": {"DeliverEvents"},
}

SERVER_STREAMING = {("liaison.correlation.v1.CorrelationService", "WatchIncident")}

# Methods that change nothing and therefore take no request_id.
READ_ONLY_PREFIXES = ("Get", "List", "Watch", "Validate", "Render", "Recommend", "Rank")
# Mutating methods whose idempotency keys sit on each entry instead.
# Methods whose retries are made safe by ids inside each entry rather than one request_id:
# BatchSubmitReports (a request_id per report) and DeliverEvents (the event ids themselves).
PER_ENTRY_REQUEST_ID = {"BatchSubmitReports", "DeliverEvents"}

EXPECTED_EVENTS = {
    "liaison.intake.v1": {"CustomerUpserted", "ReportAccepted", "CaseOpened", "CaseAssigned",
                          "CasesMerged", "CaseAwaitingCustomerNotice", "CaseClosed",
                          "CaseReopened"},
    "liaison.correlation.v1": {"ServiceUpserted", "ServiceDeleted", "IncidentDeclared", "IncidentStatusChanged", "IncidentUpdated",
                               "PostmortemAttached", "ReportLinked", "ReportUnlinked",
                               "EmergingIssueRaised", "EmergingIssueStatusChanged",
                               "BlastRadiusChanged"},
    "liaison.sla.v1": {"BreachPredicted", "BreachOccurred", "CreditOwed", "CreditSettled",
                       "SeverityRecommended", "BudgetWarning"},
    "liaison.communications.v1": {"AnnouncementApproved", "AnnouncementFinished",
                                  "MessageDelivered", "MessageFailed", "PublicStatusChanged"},
    "liaison.followup.v1": {"TaskCreated", "TaskCompleted", "TaskCancelled", "AttentionRaised"},
}


def _proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))


def _module_name(proto: str, suffix: str) -> str:
    return proto[: -len(".proto")].replace("/", ".") + suffix


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Compiles every proto with grpc_tools.protoc and puts the output on sys.path."""
    out = tmp_path_factory.mktemp("liaison_py")
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *_proto_files(),
    ]
    rc = protoc.main(args)
    assert rc == 0, f"grpc_tools.protoc failed with {rc}"
    sys.path.insert(0, str(out))
    yield out
    sys.path.remove(str(out))


@pytest.fixture(scope="session")
def modules(generated):
    mods = {}
    for proto in _proto_files():
        name = _module_name(proto, "_pb2")
        mods[proto] = importlib.import_module(name)
    return mods


def _services(modules):
    found = {}
    for mod in modules.values():
        for svc in mod.DESCRIPTOR.services_by_name.values():
            found[svc.full_name] = svc
    return found


def test_every_proto_compiles_and_imports(modules):
    assert len(modules) == len(_proto_files())
    assert any(p.startswith("liaison/") for p in modules)


def test_grpc_modules_import_with_stubs_and_servicers(generated, modules):
    for proto, mod in modules.items():
        grpc_mod = importlib.import_module(_module_name(proto, "_pb2_grpc"))
        for svc in mod.DESCRIPTOR.services_by_name.values():
            assert hasattr(grpc_mod, f"{svc.name}Stub"), svc.full_name
            assert hasattr(grpc_mod, f"{svc.name}Servicer"), svc.full_name
            assert hasattr(grpc_mod, f"add_{svc.name}Servicer_to_server"), svc.full_name


def test_services_have_expected_methods(modules):
    services = _services(modules)
    assert set(services) == set(EXPECTED_METHODS)
    for name, expected in EXPECTED_METHODS.items():
        methods = {m.name for m in services[name].methods}
        assert methods == expected, (name, methods ^ expected)
        for m in services[name].methods:
            streaming = (name, m.name) in SERVER_STREAMING
            assert m.server_streaming == streaming, (name, m.name)
            assert not m.client_streaming, (name, m.name)


def test_mutating_requests_carry_request_id(modules):
    for svc in _services(modules).values():
        for m in svc.methods:
            if m.name.startswith(READ_ONLY_PREFIXES) or m.name in PER_ENTRY_REQUEST_ID:
                continue
            fields = m.input_type.fields_by_name
            assert "request_id" in fields, f"{svc.full_name}.{m.name} lacks request_id"


def test_list_methods_page(modules):
    for svc in _services(modules).values():
        for m in svc.methods:
            if not m.name.startswith("List"):
                continue
            req, resp = m.input_type.fields_by_name, m.output_type.fields_by_name
            assert {"page_size", "page_token"} <= set(req), f"{svc.full_name}.{m.name}"
            assert "next_page_token" in resp, f"{svc.full_name}.{m.name}"


def test_update_methods_take_mask_and_etag(modules):
    for svc in _services(modules).values():
        for m in svc.methods:
            if m.name.startswith("Update"):
                fields = m.input_type.fields_by_name
                assert "update_mask" in fields, f"{svc.full_name}.{m.name}"
                assert fields["update_mask"].message_type.full_name == "google.protobuf.FieldMask"
                assert "etag" in fields, f"{svc.full_name}.{m.name}"


def _walk_enums(message):
    yield from message.enum_types
    for nested in message.nested_types:
        yield from _walk_enums(nested)


def test_enum_zero_values_are_unspecified(modules):
    for proto, mod in modules.items():
        if not proto.startswith("liaison/"):
            continue
        enums = list(mod.DESCRIPTOR.enum_types_by_name.values())
        for msg in mod.DESCRIPTOR.message_types_by_name.values():
            enums.extend(_walk_enums(msg))
        for enum in enums:
            zero = enum.values_by_number[0]
            assert zero.name.endswith("_UNSPECIFIED"), f"{enum.full_name}.{zero.name}"


def test_events_carry_header(modules):
    for pkg, names in EXPECTED_EVENTS.items():
        proto = pkg.replace(".", "/") + "/events.proto"
        mod = modules[proto]
        assert set(mod.DESCRIPTOR.message_types_by_name) == names, pkg
        for name in names:
            msg = mod.DESCRIPTOR.message_types_by_name[name]
            header = msg.fields_by_number[1]
            assert header.name == "header", f"{pkg}.{name}"
            assert header.message_type.full_name == "liaison.common.v1.EventHeader"
    header = modules["liaison/common/v1/types.proto"].EventHeader.DESCRIPTOR.fields_by_name
    assert {"event_id", "occur_time", "aggregate", "aggregate_version"} <= set(header)


def test_vendored_google_rpc_defines_standard_details(modules):
    """protos/google/rpc are verbatim googleapis copies: same package and
    message names, so clients may use googleapis-common-protos instead."""
    ours = modules["google/rpc/error_details.proto"].DESCRIPTOR
    names = {"ErrorInfo", "RetryInfo", "PreconditionFailure", "BadRequest", "ResourceInfo"}
    assert names <= set(ours.message_types_by_name)
    assert ours.package == "google.rpc"


def test_embedded_descriptor_set_matches_protos(modules):
    """Sources/LiaisonAPI/Generated/DescriptorSet.swift embeds a FileDescriptorSet
    of every Liaison proto (for server reflection) and the service names."""
    import base64
    import re

    from google.protobuf import descriptor_pb2

    swift = (REPO / "Sources/LiaisonAPI/Generated/DescriptorSet.swift").read_text()
    b64 = re.search(r'base64 = """\n(.*?)\n"""', swift, re.S).group(1)
    fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode("".join(b64.split())))
    files = {f.name for f in fds.file}
    liaison = {p for p in _proto_files() if p.startswith("liaison/")}
    assert liaison <= files
    assert "google/protobuf/timestamp.proto" in files  # imports included
    seen = set()
    for f in fds.file:  # dependencies precede dependents
        assert set(f.dependency) <= seen, f.name
        seen.add(f.name)
    services = sorted(f"{f.package}.{s.name}" for f in fds.file for s in f.service)
    declared = re.findall(r'^    "(liaison\.[^"]+)",$', swift, re.M)
    assert services == sorted(EXPECTED_METHODS) == declared
    for f in fds.file:  # same methods as the protos compiled here
        for s in f.service:
            assert {m.name for m in s.method} == EXPECTED_METHODS[f"{f.package}.{s.name}"]


def test_round_trip_over_a_socket_with_error_details(modules):
    """A Python client and server generated from the contract talk over TCP;
    a rejected request carries google.rpc.BadRequest in grpc-status-details-bin."""
    intake = modules["liaison/intake/v1/intake_service.proto"]
    resources = modules["liaison/intake/v1/resources.proto"]
    types = modules["liaison/common/v1/types.proto"]
    status_pb2 = modules["google/rpc/status.proto"]
    details_pb2 = modules["google/rpc/error_details.proto"]
    grpc_mod = importlib.import_module("liaison.intake.v1.intake_service_pb2_grpc")

    class Intake(grpc_mod.IntakeServiceServicer):
        def SubmitReport(self, request, context):
            if not request.report.text:
                bad = details_pb2.BadRequest(field_violations=[
                    details_pb2.BadRequest.FieldViolation(
                        field="report.text", description="must not be empty")])
                info = details_pb2.ErrorInfo(reason="INVALID_FIELD", domain="liaison.intake.v1")
                st = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                       message="report.text: must not be empty")
                st.details.add().Pack(bad)
                st.details.add().Pack(info)
                context.abort_with_status(_RichStatus(st))
            report = resources.Report()
            report.CopyFrom(request.report)
            report.name = "reports/r-1"
            report.case = "cases/c-1"
            return intake.SubmitReportResponse(
                report=report, case=resources.Case(name="cases/c-1", owner=request.report.agent),
                case_created=True, duplicate=False)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    grpc_mod.add_IntakeServiceServicer_to_server(Intake(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = grpc_mod.IntakeServiceStub(channel)
            report = resources.Report(
                customer="customers/acme", channel=resources.REPORT_CHANNEL_PHONE,
                agent="agents/ana", text="checkout fails with error 502",
                symptom=types.SYMPTOM_KIND_ERRORS, service_hint="checkout")
            report.receive_time.GetCurrentTime()
            resp = stub.SubmitReport(intake.SubmitReportRequest(
                report=report, request_id="7d9f1f8e-2b1c-4d7a-9a53-2f0f1f0d9c11"), timeout=10)
            assert resp.report.name == "reports/r-1"
            assert resp.case.owner == "agents/ana"
            assert resp.case_created

            with pytest.raises(grpc.RpcError) as err:
                stub.SubmitReport(intake.SubmitReportRequest(
                    report=resources.Report(customer="customers/acme"),
                    request_id="b1c6d7e8-0000-4000-8000-000000000001"), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            raw = dict(err.value.trailing_metadata())["grpc-status-details-bin"]
            st = status_pb2.Status.FromString(raw)
            bad = details_pb2.BadRequest()
            assert st.details[0].Unpack(bad)
            assert bad.field_violations[0].field == "report.text"
    finally:
        server.stop(None)


class _RichStatus(grpc.Status):
    """grpc.Status carrying a serialized google.rpc.Status (like grpcio-status)."""

    def __init__(self, status):
        code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
        self.code = code
        self.details = status.message
        self.trailing_metadata = (("grpc-status-details-bin", status.SerializeToString()),)
