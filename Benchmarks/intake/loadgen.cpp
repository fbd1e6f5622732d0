// Intake load generator: sends pre-made requests (each with its own request_id) to one unary
// method through grpc++'s generic callback stub, keeping CONCURRENCY calls in flight for SECONDS.
// A C++ client costs far less CPU per call than a Swift GRPCClient, and this machine's two cores
// are shared by the load generator, the server and PostgreSQL, as pgbench's C client shares them
// in the reference run.
//   loadgen TARGET METHOD FILE CONCURRENCY SECONDS
// FILE holds the serialized requests, each behind a 4-byte little-endian length (written by
// `IntakeBenchmark ... generate`). Every request is sent at most once; running out ends the run
// early (and says so). Prints "calls_ok=N", "calls_failed=N", "first_error=..." and
// "elapsed_seconds=S".
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Shared {
  std::vector<std::string> requests;
  std::atomic<size_t> next{0};
  std::atomic<long> ok{0};
  std::atomic<long> failed{0};
  std::chrono::steady_clock::time_point deadline;
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  std::string first_error;
  grpc::GenericStub *stub = nullptr;
  std::string method;
};

// One lane: a chain of calls, the next started from the previous one's completion.
void start(Shared *s);

void finished(Shared *s) {
  std::lock_guard<std::mutex> g(s->mu);
  if (--s->running == 0) s->cv.notify_all();
}

void start(Shared *s) {
  size_t i = s->next.fetch_add(1);
  if (i >= s->requests.size() || std::chrono::steady_clock::now() >= s->deadline) {
    finished(s);
    return;
  }
  struct Call {
    grpc::ClientContext context;
    grpc::ByteBuffer request;
    grpc::ByteBuffer response;
  };
  auto *call = new Call;
  grpc::Slice slice(s->requests[i]);
  call->request = grpc::ByteBuffer(&slice, 1);
  call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  s->stub->UnaryCall(&call->context, s->method, grpc::StubOptions(), &call->request, &call->response,
                     [s, call](grpc::Status status) {
                       if (status.ok()) {
                         s->ok.fetch_add(1);
                       } else {
                         s->failed.fetch_add(1);
                         std::lock_guard<std::mutex> g(s->mu);
                         if (s->first_error.empty())
                           s->first_error = std::to_string(status.error_code()) + " " + status.error_message();
                       }
                       delete call;
                       start(s);
                     });
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: loadgen TARGET METHOD FILE CONCURRENCY SECONDS\n");
    return 2;
  }
  Shared s;
  s.method = argv[2];
  std::ifstream in(argv[3], std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "loadgen: cannot read %s\n", argv[3]);
    return 2;
  }
  unsigned char len[4];
  while (in.read(reinterpret_cast<char *>(len), 4)) {
    uint32_t n = len[0] | (len[1] << 8) | (len[2] << 16) | (uint32_t(len[3]) << 24);
    std::string body(n, '\0');
    if (!in.read(&body[0], n)) break;
    s.requests.push_back(std::move(body));
  }
  int concurrency = std::atoi(argv[4]);
  double seconds = std::atof(argv[5]);

  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  auto channel = grpc::CreateCustomChannel(argv[1], grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    std::fprintf(stderr, "loadgen: cannot connect to %s\n", argv[1]);
    return 1;
  }
  grpc::GenericStub stub(channel);
  s.stub = &stub;

  auto begin = std::chrono::steady_clock::now();
  s.deadline = begin + std::chrono::microseconds(static_cast<long>(seconds * 1e6));
  s.running = concurrency;
  for (int i = 0; i < concurrency; i++) start(&s);
  {
    std::unique_lock<std::mutex> g(s.mu);
    s.cv.wait(g, [&] { return s.running == 0; });
  }
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  if (s.next.load() > s.requests.size())
    std::fprintf(stderr, "loadgen: ran out of requests after %zu (make more)\n", s.requests.size());
  std::printf("calls_ok=%ld\ncalls_failed=%ld\nfirst_error=%s\nelapsed_seconds=%.3f\n", s.ok.load(), s.failed.load(),
              s.first_error.c_str(), elapsed);
  return 0;
}
