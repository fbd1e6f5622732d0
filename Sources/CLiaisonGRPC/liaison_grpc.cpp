// liaison_grpc.cpp — implementation of liaison_grpc.h over grpc++'s generic callback API.
//
// Audit notes (read with the header):
//  * Every extern "C" entry point is wrapped in try/catch(...): no exception crosses the ABI.
//  * Every call object is reference counted (caller + gRPC). gRPC's reference is dropped right
//    after the DONE event, the caller's with *_release. Only the last drop deletes.
//  * grpc++ operations on one call (Start*, Finish) are issued while holding that call's
//    recursive mutex, and the state flags that decide whether an operation is still legal are
//    changed under the same mutex. This is what makes "operation after the stream was torn
//    down" impossible: grpc++ destroys its internal stream before OnDone, so an operation must
//    never be started once the reactor can reach OnDone. The mutex is recursive because grpc
//    may run a reaction inline on the thread that started an operation.
//  * The client side holds the reactor (AddHold) from StartCall until the read side ends
//    (a read returned !ok, which only happens once the server's status is in) or the caller
//    releases the call; while held, OnDone cannot run, so ops started under the mutex are safe.
//  * User callbacks are invoked WITHOUT holding the mutex where state could be inconsistent;
//    they may call back into this API (recursive mutex).

#include "liaison_grpc.h"

#include <grpc/support/time.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::atomic<int64_t> g_live_calls{0};
// Exceptions caught inside grpc++ callbacks (reported by lgrpc_exception_count).
std::atomic<int64_t> g_callback_exceptions{0};
#ifdef LGRPC_FAULT_INJECTION
// Server reads that throw inside OnReadDone, for the shim's tests of that path.
std::atomic<int> g_injected_read_failures{0};
#endif

void set_status(lgrpc_status *st, int code, const char *msg) {
  if (st == nullptr) return;
  st->code = code;
  if (msg == nullptr) msg = "";
  std::strncpy(st->message, msg, sizeof(st->message) - 1);
  st->message[sizeof(st->message) - 1] = '\0';
}

int fail(lgrpc_status *st, int code, const char *msg) {
  set_status(st, code, msg);
  return code;
}

int ok(lgrpc_status *st) {
  set_status(st, LGRPC_OK, "");
  return 0;
}

bool ends_with_bin(const char *key, size_t len) {
  return len >= 4 && std::memcmp(key + len - 4, "-bin", 4) == 0;
}

// grpc core asserts (aborts the process) on metadata it considers illegal, so the shim checks
// every entry first: key = [a-z0-9_.-]+ not starting with ':'; non-binary value = printable
// ASCII (0x20..0x7e).
bool metadata_is_legal(const lgrpc_metadata &m) {
  if (m.key == nullptr || m.key_len == 0) return false;
  for (size_t i = 0; i < m.key_len; ++i) {
    char c = m.key[i];
    bool legal = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                 c == '.';
    if (!legal) return false;
  }
  if (m.value == nullptr && m.value_len != 0) return false;
  if (!ends_with_bin(m.key, m.key_len)) {
    for (size_t i = 0; i < m.value_len; ++i) {
      if (m.value[i] < 0x20 || m.value[i] > 0x7e) return false;
    }
  }
  return true;
}

// Keys the transport itself owns; silently skipped when a caller passes them.
bool metadata_is_reserved(const std::string &key) {
  if (key.rfind("grpc-", 0) == 0) {
    return key != "grpc-status-details-bin" && key != "grpc-previous-rpc-attempts";
  }
  return key == "te" || key == "content-type" || key == "user-agent";
}

bool validate_all(const lgrpc_metadata *md, size_t count) {
  if (count > 0 && md == nullptr) return false;
  for (size_t i = 0; i < count; ++i) {
    if (!metadata_is_legal(md[i])) return false;
  }
  return true;
}

// Borrowed view of a grpc++ multimap<string_ref, string_ref> as an lgrpc_metadata array.
template <typename Map>
std::vector<lgrpc_metadata> view_metadata(const Map &map) {
  std::vector<lgrpc_metadata> out;
  out.reserve(map.size());
  for (const auto &kv : map) {
    out.push_back(lgrpc_metadata{kv.first.data(), kv.first.size(),
                                 reinterpret_cast<const uint8_t *>(kv.second.data()),
                                 kv.second.size()});
  }
  return out;
}

// Flattens a ByteBuffer; `storage` backs the bytes when the buffer has several slices.
bool flatten(grpc::ByteBuffer &buf, std::vector<grpc::Slice> &slices, std::string &storage,
             const uint8_t **data, size_t *len) {
  slices.clear();
  if (!buf.Dump(&slices).ok()) return false;
  if (slices.size() == 1) {
    *data = slices[0].begin();
    *len = slices[0].size();
  } else {
    storage.clear();
    for (auto &s : slices) storage.append(reinterpret_cast<const char *>(s.begin()), s.size());
    *data = reinterpret_cast<const uint8_t *>(storage.data());
    *len = storage.size();
  }
  return true;
}

std::shared_ptr<grpc::ChannelCredentials> client_credentials(const lgrpc_tls *tls) {
  if (tls == nullptr) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  if (tls->root_certs_pem) o.pem_root_certs = tls->root_certs_pem;
  if (tls->private_key_pem) o.pem_private_key = tls->private_key_pem;
  if (tls->cert_chain_pem) o.pem_cert_chain = tls->cert_chain_pem;
  return grpc::SslCredentials(o);
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const lgrpc_tls *tls) {
  if (tls == nullptr) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions o(
      tls->require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                               : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (tls->root_certs_pem) o.pem_root_certs = tls->root_certs_pem;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  if (tls->private_key_pem) pair.private_key = tls->private_key_pem;
  if (tls->cert_chain_pem) pair.cert_chain = tls->cert_chain_pem;
  o.pem_key_cert_pairs.push_back(pair);
  return grpc::SslServerCredentials(o);
}

class GenericService;

// Destroys client-side objects on a thread of its own. grpc 1.51 crashes
// (Subchannel::Orphan) when the last reference to a channel is dropped on one of its own
// callback threads — which is exactly where a call's OnDone runs, and a client call holds
// channel references (its GenericStub and its ClientContext). So a client call whose last
// reference goes away is deleted here, and lgrpc_channel_destroy hands its stub here too.
class Reaper {
 public:
  static Reaper &get() {
    static Reaper *r = new Reaper();  // never destroyed: its thread may outlive main()
    return *r;
  }
  void drop(std::function<void()> destroy) {
    std::lock_guard<std::mutex> g(mu_);
    queue_.push_back(std::move(destroy));
    cv_.notify_one();
  }

 private:
  Reaper() {
    std::thread([this] { run(); }).detach();
  }
  void run() {
    std::vector<std::function<void()>> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return !queue_.empty(); });
        batch.swap(queue_);
      }
      for (auto &f : batch) {
        try {
          f();  // may destroy channels: safe here
        } catch (...) {
        }
      }
      batch.clear();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> queue_;
};

}  // namespace

// ============================================================================================
// Server
// ============================================================================================

struct lgrpc_server {
  lgrpc_new_call_fn on_new_call = nullptr;
  lgrpc_event_fn on_event = nullptr;
  void *server_ctx = nullptr;
  std::unique_ptr<GenericService> service;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::mutex mu;            // guards the fields below
  bool shutdown_started = false;
  std::thread shutdown_thread;
};

struct lgrpc_server_call final : public grpc::ServerGenericBidiReactor {
  lgrpc_server_call(lgrpc_server *srv, grpc::GenericCallbackServerContext *ctx)
      : server(srv), ctx(ctx) {
    g_live_calls.fetch_add(1);
  }
  ~lgrpc_server_call() override { g_live_calls.fetch_sub(1); }

  void unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void emit(const lgrpc_event &ev) {
    if (server->on_event) server->on_event(user_ctx, &ev);
  }

  void OnReadDone(bool ok) override {
    try {
      // Take the message out of read_buf first: once read_pending is false (and certainly
      // once the event is delivered) the caller may start the next read into read_buf.
      grpc::ByteBuffer message;
      message.Swap(&read_buf);
      std::vector<grpc::Slice> slices;
      std::string storage;
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_READ;
      ev.ok = ok ? 1 : 0;
#ifdef LGRPC_FAULT_INJECTION
      if (ok && g_injected_read_failures.fetch_sub(1) > 0) throw std::bad_alloc();
#endif
      if (ok && !flatten(message, slices, storage, &ev.data, &ev.len)) ev.ok = 0;
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        read_pending = false;
        if (!ev.ok) read_closed = true;
      }
      emit(ev);
    } catch (...) {
      // The message is lost (e.g. out of memory while flattening it): the read side ends, so the
      // caller finishes the call (a unary call answers INTERNAL) instead of waiting for its
      // deadline.
      g_callback_exceptions.fetch_add(1);
      failed_event(LGRPC_EVENT_READ);
    }
  }

  void OnWriteDone(bool ok) override {
    try {
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        write_pending = false;
        write_buf.Clear();
      }
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_WRITE_DONE;
      ev.ok = ok ? 1 : 0;
      emit(ev);
    } catch (...) {
      g_callback_exceptions.fetch_add(1);
      failed_event(LGRPC_EVENT_WRITE_DONE);
    }
  }

  // After an exception in a callback: the operation is over and failed (ok = 0), so the caller
  // stops waiting for it. Never throws.
  void failed_event(lgrpc_event_kind kind) noexcept {
    try {
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        if (kind == LGRPC_EVENT_READ) {
          read_pending = false;
          read_closed = true;
        } else {
          write_pending = false;
        }
      }
      lgrpc_event ev{};
      ev.kind = kind;
      ev.ok = 0;
      emit(ev);
    } catch (...) {
    }
  }

  void OnSendInitialMetadataDone(bool) override {}

  void OnCancel() override {
    lgrpc_event ev{};
    ev.kind = LGRPC_EVENT_CANCELLED;
    emit(ev);
  }

  void OnDone() override {
    {
      std::lock_guard<std::recursive_mutex> g(mu);
      done = true;
    }
    lgrpc_event ev{};
    ev.kind = LGRPC_EVENT_DONE;
    ev.ok = 1;
    ev.status_code = final_status.error_code();
    emit(ev);
    unref();  // gRPC's reference
  }

  lgrpc_server *server;
  grpc::GenericCallbackServerContext *ctx;
  void *user_ctx = nullptr;
  std::atomic<int> refs{2};
  std::recursive_mutex mu;
  bool read_pending = false, read_closed = false, write_pending = false;
  bool initial_md_sent = false, finish_called = false, done = false;
  grpc::ByteBuffer read_buf, write_buf;
  grpc::Status final_status;
};

namespace {

class GenericService final : public grpc::CallbackGenericService {
 public:
  explicit GenericService(lgrpc_server *s) : server_(s) {}

  grpc::ServerGenericBidiReactor *CreateReactor(
      grpc::GenericCallbackServerContext *ctx) override {
    auto *call = new lgrpc_server_call(server_, ctx);
    try {
      auto md = view_metadata(ctx->client_metadata());
      std::string peer = ctx->peer();
      lgrpc_call_info info{};
      info.method = ctx->method().data();
      info.method_len = ctx->method().size();
      info.peer = peer.data();
      info.peer_len = peer.size();
      info.metadata = md.data();
      info.metadata_count = md.size();
      gpr_timespec deadline = ctx->raw_deadline();
      if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) {
        info.deadline_remaining_us = -1;
      } else {
        gpr_timespec d = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
        gpr_timespec left = gpr_time_sub(d, gpr_now(GPR_CLOCK_MONOTONIC));
        int64_t us = left.tv_sec * 1000000 + left.tv_nsec / 1000;
        info.deadline_remaining_us = us < 0 ? 0 : us;
      }
      call->user_ctx = server_->on_new_call(server_->server_ctx, call, &info);
    } catch (...) {
      call->user_ctx = nullptr;
    }
    return call;
  }

 private:
  lgrpc_server *server_;
};

std::mutex g_build_mu;  // EnableDefaultHealthCheckService is process-global
constexpr int kShutdownLingerMs = 100;

}  // namespace

extern "C" {

lgrpc_server *lgrpc_server_create(const lgrpc_server_config *config, lgrpc_status *status) {
  try {
    if (config == nullptr || config->listen_address == nullptr ||
        config->on_new_call == nullptr || config->on_event == nullptr) {
      fail(status, LGRPC_ERR_INVALID_ARGUMENT, "config, listen_address and callbacks required");
      return nullptr;
    }
    auto srv = std::make_unique<lgrpc_server>();
    srv->on_new_call = config->on_new_call;
    srv->on_event = config->on_event;
    srv->server_ctx = config->server_ctx;
    srv->service = std::make_unique<GenericService>(srv.get());

    std::lock_guard<std::mutex> g(g_build_mu);
    grpc::EnableDefaultHealthCheckService(config->enable_health != 0);
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config->listen_address, server_credentials(config->tls),
                             &srv->port);
    if (config->max_receive_message_bytes > 0)
      builder.SetMaxReceiveMessageSize(config->max_receive_message_bytes);
    if (config->max_send_message_bytes > 0)
      builder.SetMaxSendMessageSize(config->max_send_message_bytes);
    if (config->keepalive_time_ms > 0)
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, (int)config->keepalive_time_ms);
    if (config->keepalive_timeout_ms > 0)
      builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                                 (int)config->keepalive_timeout_ms);
    // Let clients ping as often as they like (keepalive clients must not be GOAWAYed).
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 1000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    if (config->max_connection_age_ms > 0)
      builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                                 (int)config->max_connection_age_ms);
    if (config->max_connection_age_grace_ms > 0)
      builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                                 (int)config->max_connection_age_grace_ms);
    if (config->max_concurrent_streams > 0)
      builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, config->max_concurrent_streams);
    if (config->memory_quota_bytes > 0) {
      grpc::ResourceQuota quota("liaison-server");
      quota.Resize(static_cast<size_t>(config->memory_quota_bytes));
      builder.SetResourceQuota(quota);
    }
    builder.RegisterCallbackGenericService(srv->service.get());
    srv->server = builder.BuildAndStart();
    grpc::EnableDefaultHealthCheckService(false);
    if (!srv->server || srv->port == 0) {
      fail(status, LGRPC_ERR_BIND, "could not bind or start the server");
      return nullptr;
    }
    if (config->enable_health && srv->server->GetHealthCheckService() != nullptr) {
      // NOT_SERVING until the application says it is ready.
      srv->server->GetHealthCheckService()->SetServingStatus("", false);
    }
    ok(status);
    return srv.release();
  } catch (...) {
    fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_server_create");
    return nullptr;
  }
}

int lgrpc_server_port(const lgrpc_server *server) { return server ? server->port : 0; }

int lgrpc_server_set_serving(lgrpc_server *server, const char *service, int serving,
                             lgrpc_status *status) {
  try {
    if (server == nullptr || service == nullptr)
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "server and service required");
    std::lock_guard<std::mutex> g(server->mu);
    if (server->shutdown_started) return fail(status, LGRPC_ERR_CLOSED, "shutting down");
    auto *health = server->server->GetHealthCheckService();
    if (health == nullptr) return fail(status, LGRPC_ERR_CLOSED, "health service disabled");
    health->SetServingStatus(service, serving != 0);
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_server_set_serving");
  }
}

int lgrpc_server_shutdown(lgrpc_server *server, int64_t grace_ms, lgrpc_shutdown_fn done,
                          void *done_ctx, lgrpc_status *status) {
  try {
    if (server == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "server required");
    std::lock_guard<std::mutex> g(server->mu);
    if (server->shutdown_started) return fail(status, LGRPC_ERR_CLOSED, "already shut down");
    server->shutdown_started = true;
    if (auto *health = server->server->GetHealthCheckService()) health->Shutdown();
    if (grace_ms < 0) grace_ms = 0;
    // Shutdown() blocks until every call is done: never on a caller's or gRPC's thread.
    server->shutdown_thread = std::thread([server, grace_ms, done, done_ctx] {
      try {
        server->server->Shutdown(std::chrono::system_clock::now() +
                                 std::chrono::milliseconds(grace_ms));
        server->server->Wait();
        // Every call is done, but the transports may still be flushing the last trailers;
        // destroying the server closes the connections at once (clients would see
        // "connection reset" instead of their status). Linger briefly first.
        std::this_thread::sleep_for(std::chrono::milliseconds(kShutdownLingerMs));
      } catch (...) {
      }
      if (done) done(done_ctx);
    });
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_server_shutdown");
  }
}

void lgrpc_server_destroy(lgrpc_server *server) {
  if (server == nullptr) return;
  try {
    bool started;
    {
      std::lock_guard<std::mutex> g(server->mu);
      started = server->shutdown_started;
    }
    if (!started) lgrpc_server_shutdown(server, 0, nullptr, nullptr, nullptr);
    if (server->shutdown_thread.joinable()) server->shutdown_thread.join();
    server->server.reset();
    server->service.reset();
    delete server;
  } catch (...) {
  }
}

int lgrpc_server_call_send_initial_metadata(lgrpc_server_call *call, const lgrpc_metadata *md,
                                            size_t count, lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    if (!validate_all(md, count))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "illegal metadata");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->finish_called || call->done) return fail(status, LGRPC_ERR_CLOSED, "finished");
    if (call->initial_md_sent) return fail(status, LGRPC_ERR_BUSY, "already sent");
    call->initial_md_sent = true;
    for (size_t i = 0; i < count; ++i) {
      std::string key(md[i].key, md[i].key_len);
      if (metadata_is_reserved(key)) continue;
      call->ctx->AddInitialMetadata(
          key, std::string(reinterpret_cast<const char *>(md[i].value), md[i].value_len));
    }
    // Like grpc++ itself: the metadata goes out with the first message or with the status,
    // saving an operation (and a packet) per call.
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in send_initial_metadata");
  }
}

int lgrpc_server_call_read(lgrpc_server_call *call, lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->finish_called || call->done || call->read_closed)
      return fail(status, LGRPC_ERR_CLOSED, "read side closed");
    if (call->read_pending) return fail(status, LGRPC_ERR_BUSY, "read pending");
    call->read_pending = true;
    call->StartRead(&call->read_buf);
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in server read");
  }
}

int lgrpc_server_call_write(lgrpc_server_call *call, const uint8_t *data, size_t len,
                            lgrpc_status *status) {
  try {
    if (call == nullptr || (data == nullptr && len != 0))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call and data required");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->finish_called || call->done) return fail(status, LGRPC_ERR_CLOSED, "finished");
    if (call->write_pending) return fail(status, LGRPC_ERR_BUSY, "write pending");
    grpc::Slice slice(data, len);
    call->write_buf = grpc::ByteBuffer(&slice, 1);
    call->write_pending = true;
    call->initial_md_sent = true;
    call->StartWrite(&call->write_buf);
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in server write");
  }
}

}  // extern "C"

namespace {

// Records the status and trailers on `call` (under its mutex, finish not yet called) and
// returns it; a "grpc-status-details-bin" trailer becomes the status details.
const grpc::Status &prepare_status(lgrpc_server_call *call, int code, const char *message,
                                   size_t message_len, const lgrpc_metadata *trailers,
                                   size_t count) {
  if (code < 0 || code > 16) code = grpc::StatusCode::UNKNOWN;
  call->finish_called = true;
  std::string details;
  for (size_t i = 0; i < count; ++i) {
    std::string key(trailers[i].key, trailers[i].key_len);
    std::string value(reinterpret_cast<const char *>(trailers[i].value), trailers[i].value_len);
    if (key == "grpc-status-details-bin") {
      details = std::move(value);
      continue;
    }
    if (metadata_is_reserved(key)) continue;
    call->ctx->AddTrailingMetadata(key, value);
  }
  std::string msg = message ? std::string(message, message_len) : std::string();
  call->final_status =
      grpc::Status(static_cast<grpc::StatusCode>(code), std::move(msg), std::move(details));
  return call->final_status;
}

}  // namespace

extern "C" {

int lgrpc_server_call_finish(lgrpc_server_call *call, int code, const char *message,
                             size_t message_len, const lgrpc_metadata *trailers, size_t count,
                             lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    if (!validate_all(trailers, count))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "illegal trailers");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->finish_called || call->done) return fail(status, LGRPC_ERR_CLOSED, "finished");
    // Finishing while the last write is still in flight is fine for grpc: chttp2 sends the
    // trailers only after every queued message. Not waiting for OnWriteDone saves a hop.
    call->Finish(prepare_status(call, code, message, message_len, trailers, count));
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in server finish");
  }
}

int lgrpc_server_call_write_and_finish(lgrpc_server_call *call, const uint8_t *data,
                                       size_t len, int code, const char *message,
                                       size_t message_len, const lgrpc_metadata *trailers,
                                       size_t count, lgrpc_status *status) {
  try {
    if (call == nullptr || (data == nullptr && len != 0))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call and data required");
    if (!validate_all(trailers, count))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "illegal trailers");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->finish_called || call->done) return fail(status, LGRPC_ERR_CLOSED, "finished");
    if (call->write_pending) return fail(status, LGRPC_ERR_BUSY, "write pending");
    grpc::Slice slice(data, len);
    call->write_buf = grpc::ByteBuffer(&slice, 1);
    call->initial_md_sent = true;
    // One operation for message, (pending) initial metadata and status, as grpc++'s own
    // unary handlers send them; no OnWriteDone follows, only OnDone.
    call->StartWriteAndFinish(&call->write_buf, grpc::WriteOptions(),
                              prepare_status(call, code, message, message_len, trailers, count));
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in server write_and_finish");
  }
}

void lgrpc_server_call_cancel(lgrpc_server_call *call) {
  if (call == nullptr) return;
  try {
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (!call->done) call->ctx->TryCancel();
  } catch (...) {
  }
}

void lgrpc_server_call_release(lgrpc_server_call *call) {
  if (call != nullptr) call->unref();
}

}  // extern "C"

// ============================================================================================
// Client
// ============================================================================================

struct lgrpc_channel {
  std::shared_ptr<grpc::GenericStub> stub;
};

struct lgrpc_client_call final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
  lgrpc_client_call() { g_live_calls.fetch_add(1); }
  ~lgrpc_client_call() override { g_live_calls.fetch_sub(1); }

  // The last reference often goes away inside OnDone, on a gRPC thread: delete on the
  // reaper thread instead (see Reaper).
  void unref() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      Reaper::get().drop([this] { delete this; });
    }
  }

  void emit(const lgrpc_event &ev) {
    if (on_event) on_event(user_ctx, &ev);
  }

  // Called with mu held. Drops the hold that keeps OnDone away while the caller may still
  // start operations.
  void drop_hold_locked() {
    if (held) {
      held = false;
      RemoveHold();
    }
  }

  void OnReadInitialMetadataDone(bool ok) override {
    try {
      std::vector<lgrpc_metadata> md;
      if (ok) md = view_metadata(context.GetServerInitialMetadata());
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_INITIAL_METADATA;
      ev.ok = ok ? 1 : 0;
      ev.metadata = md.data();
      ev.metadata_count = md.size();
      if (!ok) {
        // Trailers-only response or failed call: nothing more can be written; reads that
        // are already pending still complete. Let OnDone come without a further read.
        std::lock_guard<std::recursive_mutex> g(mu);
        write_closed = true;
        if (!read_pending) read_closed = true;
      }
      emit(ev);
      if (!ok) {
        std::lock_guard<std::recursive_mutex> g(mu);
        drop_hold_locked();
      }
    } catch (...) {
    }
  }

  void OnReadDone(bool ok) override {
    try {
      // See the server's OnReadDone: never touch read_buf after read_pending is cleared.
      grpc::ByteBuffer message;
      message.Swap(&read_buf);
      std::vector<grpc::Slice> slices;
      std::string storage;
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_READ;
      ev.ok = ok ? 1 : 0;
      if (ok && !flatten(message, slices, storage, &ev.data, &ev.len)) ev.ok = 0;
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        read_pending = false;
        if (!ev.ok) {
          // The server's status is in (or the call failed): nothing more can be read or
          // usefully written.
          read_closed = true;
          write_closed = true;
        }
      }
      emit(ev);
      if (!ev.ok) {
        std::lock_guard<std::recursive_mutex> g(mu);
        drop_hold_locked();
      }
    } catch (...) {
      // The response is lost: end the read side (the caller sees the call fail) rather than
      // leave it waiting for a message that will never be delivered.
      g_callback_exceptions.fetch_add(1);
      try {
        {
          std::lock_guard<std::recursive_mutex> g(mu);
          read_pending = false;
          read_closed = true;
          write_closed = true;
        }
        context.TryCancel();
        lgrpc_event ev{};
        ev.kind = LGRPC_EVENT_READ;
        ev.ok = 0;
        emit(ev);
        std::lock_guard<std::recursive_mutex> g(mu);
        drop_hold_locked();
      } catch (...) {
      }
    }
  }

  void OnWriteDone(bool ok) override {
    try {
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        write_pending = false;
        write_buf.Clear();
        if (!ok) write_closed = true;
        if (writes_done_deferred) {
          writes_done_deferred = false;
          StartWritesDone();
        }
      }
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_WRITE_DONE;
      ev.ok = ok ? 1 : 0;
      emit(ev);
    } catch (...) {
      g_callback_exceptions.fetch_add(1);
      try {
        {
          std::lock_guard<std::recursive_mutex> g(mu);
          write_pending = false;
          write_closed = true;
        }
        lgrpc_event ev{};
        ev.kind = LGRPC_EVENT_WRITE_DONE;
        ev.ok = 0;
        emit(ev);
      } catch (...) {
      }
    }
  }

  void OnWritesDoneDone(bool) override {}

  void OnDone(const grpc::Status &s) override {
    try {
      {
        std::lock_guard<std::recursive_mutex> g(mu);
        done = true;
      }
      auto md = view_metadata(context.GetServerTrailingMetadata());
      bool has_details = false;
      for (auto &m : md) {
        if (m.key_len == 23 && std::memcmp(m.key, "grpc-status-details-bin", 23) == 0)
          has_details = true;
      }
      const std::string &details = s.error_details();
      if (!has_details && !details.empty()) {
        md.push_back(lgrpc_metadata{"grpc-status-details-bin", 23,
                                    reinterpret_cast<const uint8_t *>(details.data()),
                                    details.size()});
      }
      const std::string message = s.error_message();
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_DONE;
      ev.ok = 1;
      ev.status_code = s.error_code();
      ev.status_message = message.data();
      ev.status_message_len = message.size();
      ev.metadata = md.data();
      ev.metadata_count = md.size();
      emit(ev);
    } catch (...) {
    }
    unref();  // gRPC's reference
  }

  std::shared_ptr<grpc::GenericStub> stub;
  std::string method;
  grpc::ClientContext context;
  lgrpc_event_fn on_event = nullptr;
  void *user_ctx = nullptr;
  std::atomic<int> refs{2};
  std::recursive_mutex mu;
  bool started = false, held = false, done = false, released = false;
  bool read_pending = false, read_before_start = false, read_closed = false;
  bool write_pending = false, write_closed = false, writes_done_deferred = false;
  grpc::ByteBuffer read_buf, write_buf;
};

extern "C" {

lgrpc_channel *lgrpc_channel_create(const char *target, const lgrpc_channel_config *config,
                                    lgrpc_status *status) {
  try {
    if (target == nullptr) {
      fail(status, LGRPC_ERR_INVALID_ARGUMENT, "target required");
      return nullptr;
    }
    grpc::ChannelArguments args;
    // Each channel owns its connections, so destroying a channel closes its sockets.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    const lgrpc_tls *tls = nullptr;
    if (config != nullptr) {
      if (config->service_config_json) args.SetServiceConfigJSON(config->service_config_json);
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, config->enable_core_retries ? 1 : 0);
      if (config->max_receive_message_bytes > 0)
        args.SetMaxReceiveMessageSize(config->max_receive_message_bytes);
      if (config->max_send_message_bytes > 0)
        args.SetMaxSendMessageSize(config->max_send_message_bytes);
      if (config->keepalive_time_ms > 0) {
        args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, (int)config->keepalive_time_ms);
        args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
        args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
      }
      if (config->keepalive_timeout_ms > 0)
        args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, (int)config->keepalive_timeout_ms);
      tls = config->tls;
      if (tls && tls->server_name_override)
        args.SetSslTargetNameOverride(tls->server_name_override);
    } else {
      args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    }
    auto channel = grpc::CreateCustomChannel(target, client_credentials(tls), args);
    if (!channel) {
      fail(status, LGRPC_ERR_INTERNAL, "could not create channel");
      return nullptr;
    }
    auto *ch = new lgrpc_channel;
    ch->stub = std::make_shared<grpc::GenericStub>(channel);
    ok(status);
    return ch;
  } catch (...) {
    fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_channel_create");
    return nullptr;
  }
}

void lgrpc_channel_destroy(lgrpc_channel *channel) {
  if (channel == nullptr) return;
  try {
    Reaper::get().drop([channel] { delete channel; });
  } catch (...) {
  }
}

lgrpc_client_call *lgrpc_client_call_create(lgrpc_channel *channel, const char *method,
                                            int64_t timeout_us, lgrpc_event_fn on_event,
                                            void *ctx, lgrpc_status *status) {
  try {
    if (channel == nullptr || method == nullptr || on_event == nullptr) {
      fail(status, LGRPC_ERR_INVALID_ARGUMENT, "channel, method and on_event required");
      return nullptr;
    }
    auto *call = new lgrpc_client_call;
    call->stub = channel->stub;
    call->method = method;
    call->on_event = on_event;
    call->user_ctx = ctx;
    if (timeout_us >= 0) {
      call->context.set_deadline(std::chrono::system_clock::now() +
                                 std::chrono::microseconds(timeout_us));
    }
    ok(status);
    return call;
  } catch (...) {
    fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_client_call_create");
    return nullptr;
  }
}

int lgrpc_client_call_start(lgrpc_client_call *call, const lgrpc_metadata *md, size_t count,
                            lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    if (!validate_all(md, count))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "illegal metadata");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->done || call->released) return fail(status, LGRPC_ERR_CLOSED, "call is over");
    if (call->started) return fail(status, LGRPC_ERR_BUSY, "already started");
    for (size_t i = 0; i < count; ++i) {
      std::string key(md[i].key, md[i].key_len);
      if (metadata_is_reserved(key)) continue;
      call->context.AddMetadata(
          key, std::string(reinterpret_cast<const char *>(md[i].value), md[i].value_len));
    }
    call->stub->PrepareBidiStreamingCall(&call->context, call->method, grpc::StubOptions(),
                                         call);
    call->started = true;
    call->held = true;
    call->AddHold();
    if (call->read_before_start) {
      call->read_before_start = false;
      call->StartRead(&call->read_buf);
    }
    call->StartCall();
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in lgrpc_client_call_start");
  }
}

int lgrpc_client_call_read(lgrpc_client_call *call, lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (call->done || call->read_closed) return fail(status, LGRPC_ERR_CLOSED, "read closed");
    if (call->read_pending) return fail(status, LGRPC_ERR_BUSY, "read pending");
    call->read_pending = true;
    if (!call->started) {
      call->read_before_start = true;
    } else {
      call->StartRead(&call->read_buf);
    }
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in client read");
  }
}

int lgrpc_client_call_write(lgrpc_client_call *call, const uint8_t *data, size_t len,
                            lgrpc_status *status) {
  try {
    if (call == nullptr || (data == nullptr && len != 0))
      return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call and data required");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (!call->started) return fail(status, LGRPC_ERR_CLOSED, "call not started");
    if (call->done || call->write_closed || !call->held)
      return fail(status, LGRPC_ERR_CLOSED, "write side closed");
    if (call->write_pending) return fail(status, LGRPC_ERR_BUSY, "write pending");
    grpc::Slice slice(data, len);
    call->write_buf = grpc::ByteBuffer(&slice, 1);
    call->write_pending = true;
    call->StartWrite(&call->write_buf);
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in client write");
  }
}

int lgrpc_client_call_writes_done(lgrpc_client_call *call, lgrpc_status *status) {
  try {
    if (call == nullptr) return fail(status, LGRPC_ERR_INVALID_ARGUMENT, "call required");
    std::lock_guard<std::recursive_mutex> g(call->mu);
    if (!call->started) return fail(status, LGRPC_ERR_CLOSED, "call not started");
    if (call->done || call->write_closed || !call->held)
      return fail(status, LGRPC_ERR_CLOSED, "write side closed");
    call->write_closed = true;
    if (call->write_pending) {
      call->writes_done_deferred = true;
    } else {
      call->StartWritesDone();
    }
    return ok(status);
  } catch (...) {
    return fail(status, LGRPC_ERR_INTERNAL, "exception in writes_done");
  }
}

void lgrpc_client_call_cancel(lgrpc_client_call *call) {
  if (call == nullptr) return;
  bool synth_done = false;
  try {
    {
      std::lock_guard<std::recursive_mutex> g(call->mu);
      if (call->done) return;
      if (!call->started) {
        call->done = true;
        call->read_closed = call->write_closed = true;
        synth_done = true;
      } else {
        call->context.TryCancel();
      }
    }
    if (synth_done) {
      if (call->read_pending) {
        call->read_pending = false;
        lgrpc_event rev{};
        rev.kind = LGRPC_EVENT_READ;
        rev.ok = 0;
        call->emit(rev);
      }
      static const char kMsg[] = "cancelled before start";
      lgrpc_event ev{};
      ev.kind = LGRPC_EVENT_DONE;
      ev.ok = 1;
      ev.status_code = grpc::StatusCode::CANCELLED;
      ev.status_message = kMsg;
      ev.status_message_len = sizeof(kMsg) - 1;
      call->emit(ev);
      call->unref();  // the reference gRPC would have dropped after DONE
    }
  } catch (...) {
  }
}

void lgrpc_client_call_release(lgrpc_client_call *call) {
  if (call == nullptr) return;
  try {
    bool never_started = false;
    {
      std::lock_guard<std::recursive_mutex> g(call->mu);
      call->released = true;
      if (call->started) {
        call->drop_hold_locked();
      } else if (!call->done) {
        never_started = true;
      }
    }
    // A never-started call has no gRPC side: end it so its second reference goes away.
    if (never_started) lgrpc_client_call_cancel(call);
  } catch (...) {
  }
  call->unref();
}

int64_t lgrpc_debug_live_calls(void) { return g_live_calls.load(); }

int64_t lgrpc_exception_count(void) { return g_callback_exceptions.load(); }

#ifdef LGRPC_FAULT_INJECTION
void lgrpc_test_inject_read_failures(int n) { g_injected_read_failures.store(n); }
#endif

}  // extern "C"
