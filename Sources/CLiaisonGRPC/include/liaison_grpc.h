/*
 * liaison_grpc.h — the one C interface of Liaison's gRPC shim over grpc++ (1.51).
 *
 * The shim moves bytes, metadata and status between a caller (Swift) and grpc++'s generic
 * callback API. It knows nothing about protobuf messages or services.
 *
 * Conventions (apply to every function below):
 *  - Prefix `lgrpc_`. Every handle is opaque and has exactly one create/destroy pair.
 *  - Functions that can fail take `lgrpc_status *status` as the LAST argument (may be NULL).
 *    On failure it is filled with a code (LGRPC_ERR_*) and a NUL-terminated message; on
 *    success its code is LGRPC_OK. Functions return 0 on success, non-zero on failure.
 *  - No C++ exception ever crosses this header: every entry point catches everything and
 *    reports LGRPC_ERR_INTERNAL instead.
 *  - Buffers passed IN are borrowed for the duration of the call only (the shim copies what it
 *    keeps). Buffers passed OUT through callbacks (`lgrpc_event`) are borrowed for the duration
 *    of the callback only; copy what you need before returning.
 *  - Callbacks are a C function pointer plus an opaque `void *ctx` the caller chose.
 *
 * Thread rules:
 *  - All functions may be called from any thread, concurrently, EXCEPT that for one call
 *    handle, at most one read and one write (write / writes_done / finish) may be outstanding
 *    at a time; starting a second one while the first is pending fails with
 *    LGRPC_ERR_BUSY instead of corrupting state.
 *  - Callbacks run on gRPC's own threads. They MUST NOT block (no waiting on locks held across
 *    I/O, no sleeping, no lgrpc_server_shutdown-style waits). They MAY call the non-blocking
 *    lgrpc_*_read / write / finish / cancel functions of this header.
 *  - Nothing in this header blocks except lgrpc_server_destroy (which must be called after the
 *    shutdown callback fired) and lgrpc_channel_destroy (which only drops a reference).
 *
 * Call-handle lifetime:
 *  - A call handle is reference counted: one reference belongs to the caller, one to gRPC.
 *    gRPC drops its reference after delivering LGRPC_EVENT_DONE (always the last event of a
 *    call, delivered exactly once). The caller drops its reference with *_call_release. The
 *    memory goes away when both are gone, so calling any function on a released-by-gRPC but
 *    not-yet-released-by-you handle is safe (it fails with LGRPC_ERR_CLOSED).
 *  - The per-call `ctx` you supplied is never used after LGRPC_EVENT_DONE returns: release
 *    your context in the DONE handler.
 *  - Client: DONE arrives once the server's status is in AND the shim knows you will start no
 *    more operations: a read completed with ok = 0, INITIAL_METADATA completed with ok = 0
 *    (trailers-only response), or you released the call. So read until ok = 0 (or release).
 */
#ifndef LIAISON_GRPC_H
#define LIAISON_GRPC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ---------------------------------------------------------------------------- */

enum {
  LGRPC_OK = 0,
  LGRPC_ERR_INVALID_ARGUMENT = 1, /* bad argument, e.g. illegal metadata key or value */
  LGRPC_ERR_BUSY = 2,             /* an operation of the same kind is still pending */
  LGRPC_ERR_CLOSED = 3,           /* the call or server is finished / shut down */
  LGRPC_ERR_INTERNAL = 4,         /* unexpected failure inside grpc++ (exception caught) */
  LGRPC_ERR_BIND = 5              /* the server could not bind its listening address */
};

/** Out-parameter describing why a function failed. */
typedef struct lgrpc_status {
  int code;          /* LGRPC_OK or LGRPC_ERR_* */
  char message[256]; /* NUL-terminated, possibly truncated */
} lgrpc_status;

/* ---- metadata -------------------------------------------------------------------------- */

/** One metadata entry. Keys are lowercase; keys ending in "-bin" carry raw binary values. */
typedef struct lgrpc_metadata {
  const char *key;
  size_t key_len;
  const uint8_t *value;
  size_t value_len;
} lgrpc_metadata;

/* ---- events ---------------------------------------------------------------------------- */

typedef enum lgrpc_event_kind {
  /** A read finished. `ok` = 1 and `data`/`len` hold one whole message; `ok` = 0 means the
   *  peer half-closed (or the call ended) and no more messages will come. */
  LGRPC_EVENT_READ = 1,
  /** A write finished. `ok` = 0 means the message could not be sent (call ended). */
  LGRPC_EVENT_WRITE_DONE = 2,
  /** Client only: the server's initial metadata arrived (`ok` = 1, in `metadata`), or the
   *  call ended without it (`ok` = 0, e.g. a trailers-only response). */
  LGRPC_EVENT_INITIAL_METADATA = 3,
  /** Server only: the RPC was cancelled (client went away, deadline passed, or server
   *  shutdown). The call must still be finished; DONE follows. */
  LGRPC_EVENT_CANCELLED = 4,
  /** Last event of every call. Client: `status_code`, `status_message`, `metadata` hold the
   *  final status and trailers (the status details, if any, as "grpc-status-details-bin").
   *  Server: `ok` = 1 if the status reached the client's transport. */
  LGRPC_EVENT_DONE = 5
} lgrpc_event_kind;

/** Everything delivered to a call's event callback. All pointers are borrowed for the
 *  duration of the callback only. */
typedef struct lgrpc_event {
  lgrpc_event_kind kind;
  int ok;
  const uint8_t *data;
  size_t len;
  const lgrpc_metadata *metadata;
  size_t metadata_count;
  int status_code; /* grpc status code (0..16), DONE on the client */
  const char *status_message;
  size_t status_message_len;
} lgrpc_event;

typedef void (*lgrpc_event_fn)(void *call_ctx, const lgrpc_event *event);

/* ---- TLS ------------------------------------------------------------------------------- */

/** PEM strings (NUL-terminated); NULL for "not set". */
typedef struct lgrpc_tls {
  const char *root_certs_pem;   /* server: CA for client certs (mTLS); client: CA for server */
  const char *cert_chain_pem;   /* own certificate chain */
  const char *private_key_pem;  /* own private key */
  int require_client_cert;      /* server only: 1 = mTLS, verify the client's certificate */
  const char *server_name_override; /* client only: expected server name (tests) */
} lgrpc_tls;

/* ---- server ---------------------------------------------------------------------------- */

typedef struct lgrpc_server lgrpc_server;
typedef struct lgrpc_server_call lgrpc_server_call;

/** Facts about a new inbound call, borrowed for the duration of the new-call callback. */
typedef struct lgrpc_call_info {
  const char *method; /* "/package.Service/Method" */
  size_t method_len;
  const char *peer;   /* e.g. "ipv4:127.0.0.1:5555" */
  size_t peer_len;
  const lgrpc_metadata *metadata; /* the client's initial metadata */
  size_t metadata_count;
  int64_t deadline_remaining_us; /* time left before the client's deadline; -1 = none */
} lgrpc_call_info;

/** Called on a gRPC thread for every call that no registered service (health) claims. Return
 *  the per-call context that lgrpc_server_config.on_event will receive. Must not block. The
 *  caller owns one reference to `call` from now on (release it with lgrpc_server_call_release). */
typedef void *(*lgrpc_new_call_fn)(void *server_ctx, lgrpc_server_call *call,
                                   const lgrpc_call_info *info);

/** Called once, on a dedicated shim thread, when a shutdown started by lgrpc_server_shutdown
 *  has completed (every call is DONE). */
typedef void (*lgrpc_shutdown_fn)(void *ctx);

typedef struct lgrpc_server_config {
  const char *listen_address;     /* "host:port"; port 0 picks a free port */
  int max_receive_message_bytes;  /* <= 0: grpc default (4 MiB) */
  int max_send_message_bytes;     /* <= 0: unlimited */
  int64_t keepalive_time_ms;      /* <= 0: grpc default */
  int64_t keepalive_timeout_ms;   /* <= 0: grpc default */
  int64_t max_connection_age_ms;  /* <= 0: unlimited */
  int64_t max_connection_age_grace_ms; /* <= 0: unlimited */
  int enable_health;              /* 1: serve grpc.health.v1 via grpc++'s default service */
  const lgrpc_tls *tls;           /* NULL: plaintext */
  lgrpc_new_call_fn on_new_call;
  lgrpc_event_fn on_event;
  void *server_ctx;               /* passed to on_new_call; must outlive the server */
  int max_concurrent_streams;     /* per connection (HTTP/2 SETTINGS); <= 0: grpc default */
  int64_t memory_quota_bytes;     /* grpc++ ResourceQuota for the server; <= 0: unlimited */
} lgrpc_server_config;

/** Builds and starts a server. Returns NULL on failure (status says why). The server is
 *  serving when this returns. Destroy with lgrpc_server_destroy. */
lgrpc_server *lgrpc_server_create(const lgrpc_server_config *config, lgrpc_status *status);

/** The port actually bound (useful with port 0). */
int lgrpc_server_port(const lgrpc_server *server);

/** Sets the health status of `service` ("" = the whole server). Ignored after shutdown began. */
int lgrpc_server_set_serving(lgrpc_server *server, const char *service, int serving,
                             lgrpc_status *status);

/** Starts a graceful shutdown on a dedicated thread and returns immediately: health turns
 *  NOT_SERVING, no new calls are accepted, in-flight calls may finish until `grace_ms` passes
 *  (0 = cancel them at once), then they are cancelled. `done` runs once every call is DONE
 *  and a short linger (100 ms) has let the last frames flush.
 *  A second call only returns LGRPC_ERR_CLOSED. */
int lgrpc_server_shutdown(lgrpc_server *server, int64_t grace_ms, lgrpc_shutdown_fn done,
                          void *done_ctx, lgrpc_status *status);

/** Frees the server. If a shutdown was started, waits for it (call it after `done` fired, or
 *  from a thread that may block). If none was started, shuts down with no grace first.
 *  Must not be called from a gRPC callback. */
void lgrpc_server_destroy(lgrpc_server *server);

/** Server call operations. `md` arrays are borrowed.
 *  send_initial_metadata queues the response headers; as in grpc++, they are sent together
 *  with the first message or with the status, whichever comes first. At most once. */
int lgrpc_server_call_send_initial_metadata(lgrpc_server_call *call, const lgrpc_metadata *md,
                                            size_t count, lgrpc_status *status);
/** Starts one read; LGRPC_EVENT_READ follows. */
int lgrpc_server_call_read(lgrpc_server_call *call, lgrpc_status *status);
/** Copies `len` bytes and starts one write; LGRPC_EVENT_WRITE_DONE follows. */
int lgrpc_server_call_write(lgrpc_server_call *call, const uint8_t *data, size_t len,
                            lgrpc_status *status);
/** Sends status and trailers (a "grpc-status-details-bin" entry becomes the status details)
 *  and ends the call; DONE follows. May be called while a write is in flight: the status
 *  goes out after it. Never blocks. */
int lgrpc_server_call_finish(lgrpc_server_call *call, int code, const char *message,
                             size_t message_len, const lgrpc_metadata *trailers,
                             size_t count, lgrpc_status *status);
/** Sends `len` bytes (copied) as the last message, then status and trailers as
 *  lgrpc_server_call_finish does, in one grpc++ operation (StartWriteAndFinish); pending initial
 *  metadata goes with it. No LGRPC_EVENT_WRITE_DONE follows, only DONE. Fails with
 *  LGRPC_ERR_BUSY while a write is in flight. Never blocks. */
int lgrpc_server_call_write_and_finish(lgrpc_server_call *call, const uint8_t *data, size_t len,
                                       int code, const char *message, size_t message_len,
                                       const lgrpc_metadata *trailers, size_t count,
                                       lgrpc_status *status);
/** Cancels the call (the client sees CANCELLED). The call must still be finished. */
void lgrpc_server_call_cancel(lgrpc_server_call *call);
/** Drops the caller's reference. */
void lgrpc_server_call_release(lgrpc_server_call *call);

/* ---- client ---------------------------------------------------------------------------- */

typedef struct lgrpc_channel lgrpc_channel;
typedef struct lgrpc_client_call lgrpc_client_call;

typedef struct lgrpc_channel_config {
  const char *service_config_json; /* NULL: none (grpc's pick_first) */
  int enable_core_retries;         /* grpc.enable_retries; 0 disables transparent retries too */
  int max_receive_message_bytes;   /* <= 0: grpc default (4 MiB) */
  int max_send_message_bytes;      /* <= 0: unlimited */
  int64_t keepalive_time_ms;       /* <= 0: off */
  int64_t keepalive_timeout_ms;    /* <= 0: grpc default */
  const lgrpc_tls *tls;            /* NULL: plaintext */
} lgrpc_channel_config;

/** Creates a channel to `target` (e.g. "ipv4:127.0.0.1:1,127.0.0.1:2", "dns:///host:port",
 *  "127.0.0.1:50051"). Connects lazily. Destroy with lgrpc_channel_destroy (any thread,
 *  including inside a callback); calls still running keep the underlying connection alive
 *  until they are DONE. The grpc channel itself is always torn down on a shim-owned thread:
 *  grpc 1.51 crashes when a channel's last reference goes away on its own callback thread. */
lgrpc_channel *lgrpc_channel_create(const char *target, const lgrpc_channel_config *config,
                                    lgrpc_status *status);
void lgrpc_channel_destroy(lgrpc_channel *channel);

/** Creates a call (not started). `timeout_us` < 0: no deadline. Events go to `on_event`
 *  with `ctx`. The caller owns one reference. */
lgrpc_client_call *lgrpc_client_call_create(lgrpc_channel *channel, const char *method,
                                            int64_t timeout_us, lgrpc_event_fn on_event,
                                            void *ctx, lgrpc_status *status);
/** Sends the initial metadata and starts the call. Exactly once. After a successful start,
 *  DONE is guaranteed to be delivered. */
int lgrpc_client_call_start(lgrpc_client_call *call, const lgrpc_metadata *md, size_t count,
                            lgrpc_status *status);
/** Starts one read (may be issued before start; it is performed once the call starts). */
int lgrpc_client_call_read(lgrpc_client_call *call, lgrpc_status *status);
int lgrpc_client_call_write(lgrpc_client_call *call, const uint8_t *data, size_t len,
                            lgrpc_status *status);
/** Half-closes the call (no more writes). No event follows. */
int lgrpc_client_call_writes_done(lgrpc_client_call *call, lgrpc_status *status);
/** Cancels the call. If it was never started, DONE(CANCELLED) is delivered synchronously on
 *  the calling thread instead. Safe to call any number of times. */
void lgrpc_client_call_cancel(lgrpc_client_call *call);
/** Drops the caller's reference and promises to start no further operation. A started call
 *  that is not DONE runs to its end (cancel it first if you no longer want it) and still
 *  delivers DONE to `ctx`. A call that was never started is cancelled: DONE(CANCELLED) is
 *  delivered synchronously, on the calling thread, before this returns. */
void lgrpc_client_call_release(lgrpc_client_call *call);

/** Number of shim call objects alive (server + client); for leak tests. */
int64_t lgrpc_debug_live_calls(void);

/** Exceptions caught inside grpc++'s callbacks since the process started. Each one ended the
 *  operation it interrupted with ok = 0 (so no call waits for its deadline); exported as the
 *  metric liaison_grpc_callback_exceptions_total. */
int64_t lgrpc_exception_count(void);

#ifdef LGRPC_FAULT_INJECTION
/** Test builds only (Tests/shim): the next `n` server reads throw inside grpc++'s callback. */
void lgrpc_test_inject_read_failures(int n);
#endif

#ifdef __cplusplus
}
#endif

#endif /* LIAISON_GRPC_H */
