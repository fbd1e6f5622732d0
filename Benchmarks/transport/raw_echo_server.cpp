// Baseline for Benchmarks/transport/run.sh: a plain grpc++ callback echo server using the
// same generic API as the shim (CallbackGenericService + ServerGenericBidiReactor). Every
// method echoes each request message and finishes OK when the client half-closes.
//   raw_echo_server PORT
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <string>

class Echo final : public grpc::ServerGenericBidiReactor {
 public:
  Echo() { StartRead(&buf_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&buf_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::UNKNOWN, "write failed"));
      return;
    }
    StartRead(&buf_);
  }
  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer buf_;
};

class Service final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor *CreateReactor(grpc::GenericCallbackServerContext *) override {
    return new Echo;
  }
};

int main(int argc, char **argv) {
  std::string address = std::string("127.0.0.1:") + (argc > 1 ? argv[1] : "0");
  Service service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  auto server = builder.BuildAndStart();
  if (!server) return 1;
  std::printf("listening on %d\n", port);
  std::fflush(stdout);
  server->Wait();
}
