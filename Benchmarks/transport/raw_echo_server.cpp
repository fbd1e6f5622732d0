// Baseline for Benchmarks/transport/run.sh: a plain grpc++ callback echo server using the
// same generic API as the shim (CallbackGenericService + ServerGenericBidiReactor). Every
// method echoes each request message and finishes OK when the client half-closes.
//   raw_echo_server PORT [--unary]
// --unary: the op pattern of a grpc++ unary handler (and of the shim's direct unary path):
// read one message, then send it with the status in one StartWriteAndFinish.
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

class UnaryEcho final : public grpc::ServerGenericBidiReactor {
 public:
  UnaryEcho() { StartRead(&buf_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "Empty stream."));
      return;
    }
    StartWriteAndFinish(&buf_, grpc::WriteOptions(), grpc::Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer buf_;
};

class Service final : public grpc::CallbackGenericService {
 public:
  explicit Service(bool unary) : unary_(unary) {}
  grpc::ServerGenericBidiReactor *CreateReactor(grpc::GenericCallbackServerContext *) override {
    if (unary_) return new UnaryEcho;
    return new Echo;
  }

 private:
  bool unary_;
};

int main(int argc, char **argv) {
  std::string address = std::string("127.0.0.1:") + (argc > 1 ? argv[1] : "0");
  Service service(argc > 2 && std::string(argv[2]) == "--unary");
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
