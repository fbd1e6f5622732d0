#!/usr/bin/env python3
"""Standard gRPC interop cases (grpc/doc/interop-test-descriptions.md), driven by Python's
grpcio against the Swift InteropServer, plus grpc.health.v1 and server reflection checks.

Usage: interop_client.py PORT GENERATED_DIR
Prints one line per case ("PASS name" / "FAIL name: why") and last "N passed, M failed".
"""
import sys
import traceback

port, gen_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, gen_dir)

import grpc  # noqa: E402
import empty_pb2  # noqa: E402
import messages_pb2  # noqa: E402
import test_pb2_grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from google.protobuf import descriptor_pb2  # noqa: E402

TARGET = "127.0.0.1:" + port
channel = grpc.insecure_channel(TARGET)
stub = test_pb2_grpc.TestServiceStub(channel)
results = []


def case(fn):
    name = fn.__name__
    try:
        fn()
        results.append((name, None))
        print("PASS", name, flush=True)
    except Exception as e:  # noqa: BLE001
        results.append((name, e))
        print("FAIL %s: %r" % (name, e), flush=True)
        traceback.print_exc(file=sys.stderr)
    return fn


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def payload(n):
    return messages_pb2.Payload(body=b"\0" * n)


def expect_code(fn, code, message=None):
    try:
        fn()
    except grpc.RpcError as e:
        check(e.code() == code, "expected %s, got %s (%s)" % (code, e.code(), e.details()))
        if message is not None:
            check(e.details() == message, "message %r != %r" % (e.details(), message))
        return e
    raise AssertionError("expected %s, call succeeded" % code)


@case
def empty_unary():
    r = stub.EmptyCall(empty_pb2.Empty(), timeout=10)
    check(r == empty_pb2.Empty(), "non-empty response")


@case
def large_unary():
    r = stub.UnaryCall(messages_pb2.SimpleRequest(response_size=314159, payload=payload(271828)), timeout=10)
    check(len(r.payload.body) == 314159, "size %d" % len(r.payload.body))


@case
def client_streaming():
    reqs = (messages_pb2.StreamingInputCallRequest(payload=payload(n)) for n in (27182, 8, 1828, 45904))
    r = stub.StreamingInputCall(reqs, timeout=10)
    check(r.aggregated_payload_size == 74922, "aggregate %d" % r.aggregated_payload_size)


@case
def server_streaming():
    sizes = (31415, 9, 2653, 58979)
    req = messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=n) for n in sizes])
    got = [len(r.payload.body) for r in stub.StreamingOutputCall(req, timeout=10)]
    check(got == list(sizes), "sizes %r" % got)


class Pipe:
    """A blocking request iterator the test feeds one message at a time."""

    def __init__(self):
        import queue
        self.q = queue.Queue()

    def add(self, m):
        self.q.put(m)

    def close(self):
        self.q.put(None)

    def __iter__(self):
        return self

    def __next__(self):
        m = self.q.get()
        if m is None:
            raise StopIteration
        return m


@case
def ping_pong():
    pipe = Pipe()
    call = stub.FullDuplexCall(pipe, timeout=10)
    for req_n, resp_n in zip((27182, 8, 1828, 45904), (31415, 9, 2653, 58979)):
        pipe.add(messages_pb2.StreamingOutputCallRequest(
            response_parameters=[messages_pb2.ResponseParameters(size=resp_n)], payload=payload(req_n)))
        r = next(call)
        check(len(r.payload.body) == resp_n, "size %d" % len(r.payload.body))
    pipe.close()
    check(list(call) == [], "extra responses")


@case
def empty_stream():
    got = list(stub.FullDuplexCall(iter([]), timeout=10))
    check(got == [], "responses on empty stream")


@case
def custom_metadata():
    md = (("x-grpc-test-echo-initial", "test_initial_metadata_value"),
          ("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab"))
    _, call = stub.UnaryCall.with_call(
        messages_pb2.SimpleRequest(response_size=314159, payload=payload(271828)), metadata=md, timeout=10)
    check(("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata(),
          "initial %r" % (call.initial_metadata(),))
    check(("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata(),
          "trailing %r" % (call.trailing_metadata(),))
    call = stub.FullDuplexCall(iter([messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=314159)], payload=payload(271828))]),
        metadata=md, timeout=10)
    got = list(call)
    check(len(got) == 1 and len(got[0].payload.body) == 314159, "duplex response")
    check(("x-grpc-test-echo-initial", "test_initial_metadata_value") in call.initial_metadata(),
          "duplex initial %r" % (call.initial_metadata(),))
    check(("x-grpc-test-echo-trailing-bin", b"\xab\xab\xab") in call.trailing_metadata(),
          "duplex trailing %r" % (call.trailing_metadata(),))


def status_case(message):
    st = messages_pb2.EchoStatus(code=2, message=message)
    expect_code(lambda: stub.UnaryCall(messages_pb2.SimpleRequest(response_status=st), timeout=10),
                grpc.StatusCode.UNKNOWN, message)
    expect_code(lambda: list(stub.FullDuplexCall(
        iter([messages_pb2.StreamingOutputCallRequest(response_status=st)]), timeout=10)),
        grpc.StatusCode.UNKNOWN, message)


@case
def status_code_and_message():
    status_case("test status message")


@case
def special_status_message():
    status_case("\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001F608\t\n")


@case
def unimplemented_method():
    expect_code(lambda: stub.UnimplementedCall(empty_pb2.Empty(), timeout=10), grpc.StatusCode.UNIMPLEMENTED)


@case
def unimplemented_service():
    other = test_pb2_grpc.UnimplementedServiceStub(channel)
    expect_code(lambda: other.UnimplementedCall(empty_pb2.Empty(), timeout=10), grpc.StatusCode.UNIMPLEMENTED)


@case
def cancel_after_begin():
    fut = stub.StreamingInputCall.future(Pipe(), timeout=10)
    fut.cancel()
    check(fut.cancelled(), "not cancelled")
    check(fut.code() == grpc.StatusCode.CANCELLED, "code %s" % fut.code())


@case
def cancel_after_first_response():
    pipe = Pipe()
    call = stub.FullDuplexCall(pipe, timeout=10)
    pipe.add(messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=31415)], payload=payload(27182)))
    r = next(call)
    check(len(r.payload.body) == 31415, "first response")
    call.cancel()
    check(call.code() == grpc.StatusCode.CANCELLED, "code %s" % call.code())


@case
def timeout_on_sleeping_server():
    pipe = Pipe()
    call = stub.FullDuplexCall(pipe, timeout=0.001)
    pipe.add(messages_pb2.StreamingOutputCallRequest(payload=payload(27182)))
    expect_code(lambda: list(call), grpc.StatusCode.DEADLINE_EXCEEDED)
    pipe.close()


@case
def health_checking():
    h = health_pb2_grpc.HealthStub(channel)
    for service in ("", "grpc.testing.TestService"):
        r = h.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        check(r.status == health_pb2.HealthCheckResponse.SERVING, "%r: %s" % (service, r.status))
    expect_code(lambda: h.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10),
                grpc.StatusCode.NOT_FOUND)
    watch = h.Watch(health_pb2.HealthCheckRequest(service="grpc.testing.TestService"), timeout=10)
    first = next(watch)
    check(first.status == health_pb2.HealthCheckResponse.SERVING, "watch %s" % first.status)
    watch.cancel()


@case
def reflection_v1alpha():
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    check("grpc.testing.TestService" in services, "services %r" % (services,))
    for s in services:
        fd = db.FindFileContainingSymbol(s)
        check(fd is not None and fd.name, "no file for %s" % s)
    fd = db.FindFileContainingSymbol("grpc.testing.TestService")
    check(fd.name == "grpc/testing/test.proto", "file %s" % fd.name)
    check(db.FindFileByName("grpc/testing/messages.proto").name == "grpc/testing/messages.proto", "by name")
    msg = db.FindFileContainingSymbol("grpc.testing.SimpleRequest")
    check(msg.name == "grpc/testing/messages.proto", "symbol file %s" % msg.name)


@case
def reflection_v1():
    # v1 and v1alpha messages are wire-identical, so v1alpha classes can talk to v1.
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    reqs = [reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.testing.TestService.UnaryCall"),
            reflection_pb2.ServerReflectionRequest(file_by_filename="no/such.proto")]
    out = list(call(iter(reqs), timeout=10))
    check(len(out) == 3, "responses %d" % len(out))
    names = [s.name for s in out[0].list_services_response.service]
    check("grpc.testing.TestService" in names, "services %r" % names)
    files = [descriptor_pb2.FileDescriptorProto.FromString(b).name
             for b in out[1].file_descriptor_response.file_descriptor_proto]
    check("grpc/testing/test.proto" in files and "grpc/testing/messages.proto" in files, "files %r" % files)
    check(out[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], "not found %r" % out[2])


passed = sum(1 for _, e in results if e is None)
failed = len(results) - passed
print("%d passed, %d failed" % (passed, failed))
sys.exit(0 if failed == 0 else 1)
