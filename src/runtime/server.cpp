// The server: N shared-nothing event loops, each with its own SO_REUSEPORT
// listener and its own connections; only the session table (client id ->
// connection, for takeover) and the metrics are shared.
#include "lifeline/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <future>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "lifeline/check.hpp"
#include "lifeline/engine/codec.hpp"
#include "lifeline/engine/failure_detector.hpp"
#include "lifeline/engine/liveness.hpp"
#include "net/endpoint.hpp"
#include "net/socket_options.hpp"
#include "net/tcp_info.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/http_endpoint.hpp"
#include "runtime/metrics.hpp"
#include "runtime/output_queue.hpp"
#include "runtime/stream_socket.hpp"

namespace lifeline {

using runtime::EventLoop;
using runtime::LoopObject;
using runtime::OutputQueue;
using runtime::RingCompletion;
using runtime::RingOp;
using runtime::StreamSocket;

Result<void> ServerOptions::validate() const {
    if (threads < 1 || threads > 256) return Error{"--threads must be 1..256 (got " + std::to_string(threads) + ")"};
    if (heartbeat <= Duration::zero()) return Error{"--heartbeat must be > 0"};
    if (timeout <= heartbeat)
        return Error{"--timeout (" + to_string(timeout) + ") must be longer than --heartbeat (" + to_string(heartbeat) +
                     "): a healthy idle peer would be convicted between two heartbeats"};
    if (min_interval <= Duration::zero() || min_interval > heartbeat)
        return Error{"--min-interval (" + to_string(min_interval) + ") must be > 0 and <= --heartbeat (" +
                     to_string(heartbeat) + ")"};
    if (max_timeout < timeout) return Error{"--max-timeout must be >= --timeout"};
    if (min_interval * 2 > max_timeout)
        return Error{"--min-interval (" + to_string(min_interval) + ") must be at most half of --max-timeout (" +
                     to_string(max_timeout) + ")"};
    if (handshake_timeout <= Duration::zero()) return Error{"handshake timeout must be > 0"};
    if (idle_timeout < Duration::zero()) return Error{"--idle-timeout must be >= 0"};
    if (output_budget < 1024) return Error{"output budget must be at least 1 KiB"};
    if (slow_consumer_after < Duration::zero()) return Error{"--slow-consumer-after must be >= 0"};
    if (max_body_size < 16 || max_body_size > (1u << 24)) return Error{"max body size must be 16 B..16 MiB"};
    if (tick <= Duration::zero() || tick > Duration::seconds(1)) return Error{"tick must be in (0, 1s]"};
    if (push_rate > kMaxPushRate)
        return Error{"--push must be at most 1G (1 GiB/s); got " + std::to_string(push_rate) + " bytes/s"};
    if (auto k = keepalive.validate(); !k) return Error{"--keepalive: " + k.error().message};
    return {};
}

Result<std::uint64_t> parse_byte_rate(std::string_view text) {
    auto bad = [text](std::string_view why) {
        return Error{"expected a byte rate like 64K or 1M, got '" + std::string(text) + "'" + std::string(why)};
    };
    std::size_t digits = 0;
    std::uint64_t value = 0;
    for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
        if (__builtin_mul_overflow(value, std::uint64_t{10}, &value) ||
            __builtin_add_overflow(value, static_cast<std::uint64_t>(text[digits] - '0'), &value))
            return bad(" (too large)");
    }
    if (digits == 0) return bad("");
    const std::string_view suffix = text.substr(digits);
    unsigned shift = 0;
    if (suffix.empty()) {
        shift = 0;
    } else if (suffix == "K" || suffix == "k") {
        shift = 10;
    } else if (suffix == "M" || suffix == "m") {
        shift = 20;
    } else if (suffix == "G" || suffix == "g") {
        shift = 30;
    } else {
        return bad("");
    }
    if (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) return bad(" (too large)");
    return value << shift;
}

namespace {

class Worker;

enum class ConnState : std::uint8_t { handshake, open, closed };

// One accepted connection. Its TimerNode (the LoopObject base) is its only
// timer: the handshake deadline first, then the liveness machine's deadline.
constexpr std::uint8_t kPingBurst = 4;  // PINGs a client may send at once.

class Connection final : public LoopObject {
public:
    Connection(Worker& worker, int fd, const sockaddr_storage& peer, std::uint64_t id, std::uint32_t slot, Instant now,
               Duration idle_timeout);
    ~Connection() override;

    void on_io(std::uint32_t events) override;
    void on_timer() override;
    void on_ring(const RingCompletion& completion) override;
    void on_ring_flush() override;

    void start();
    // Ends the connection exactly once: emits `closed` and releases the fd.
    void close(DisconnectReason reason, const std::string& message = "");
    // Best effort: queue a CLOSE frame (framed mode) before closing.
    void close_with_frame(DisconnectReason reason, CloseCode code, const std::string& text);
    void send_frame(const Frame& frame, bool control, bool best_effort = false);
    // Sends push filler (one whole DATA frame when framed) through the
    // ordinary output path: it counts toward the output budget and as bytes
    // sent, never as bytes received. May close the connection (slow_consumer,
    // a send error).
    void push_filler(std::span<const std::uint8_t> bytes, std::size_t payload) {
        count_data(0, payload);
        transmit(bytes, false);
    }
    // Backpressured (reading paused, or more than the budget refused by the
    // kernel): pushing more would only grow the queue.
    bool over_budget() const { return over_budget_ms_ != 0; }
    void forgive_stall(Instant now, Duration lag);
    nlohmann::json describe(Instant now) const;

    std::uint64_t id() const { return id_; }
    std::uint32_t slot() const { return slot_; }
    ConnState state() const { return state_; }
    bool output_pending() const { return socket_.queued_bytes() > 0; }
    // io_uring: operations still in flight; a closed connection lingers until none are.
    bool ring_busy() const { return socket_.ring_busy(); }
    // The id the client chose, or the one the server assigned ("c<conn>"); empty before HELLO.
    std::string client_id() const;
    // "198.18.0.2:40122", recorded at accept: still right after a reset.
    std::string peer() const;

private:
    void read_available();
    // What a read (or a receive completion) brought; false when reading should stop.
    bool take_read(const StreamSocket::ReadResult& r, std::span<const std::uint8_t> bytes);
    void after_send(std::size_t written, int error);
    void handle_bytes(std::span<const std::uint8_t> bytes);
    void handle_frame(const Frame& frame);
    void handle_hello(const Hello& hello);
    void handle_ping(const Ping& ping);
    // `best_effort`: a frame sent on the way out (CLOSE). It never changes how
    // the connection ends: a send error or a full budget just drops it.
    void transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort = false);
    void flush();
    void close_on_socket_error(int err);
    // Output backpressure (ServerOptions::output_budget): pause or resume
    // reading, start or clear the slow-consumer clock.
    void check_backlog();
    // The slow-consumer clock ran out: ask the kernel who is at fault.
    void judge_stalled_output(Instant now);
    Duration slow_consumer_grace() const;
    Instant over_budget_deadline() const;
    // While reading is paused, a live peer as the kernel sees it (window
    // probes answered) is not silent: its heartbeats wait unread behind us.
    void credit_unread_input(Instant now);
    void rearm();
    Event event(EventKind kind) const;
    // Heartbeat RTT when the server pings; else the kernel's smoothed RTT.
    Duration last_rtt() const;

    // The worker is not stored: every call runs on its loop thread, which knows
    // it (8 bytes saved on every idle connection).
    static Worker& worker();

    FixedTimeoutDetector detector_;
    LivenessMachine liveness_;
    FrameDecoder decoder_;
    StreamSocket socket_;
    // What few connections need: the id a client chose (server-assigned ones
    // are derived) and an IPv6 peer's address. A connection without either
    // pays 8 bytes here.
    struct Extras {
        std::string chosen_id;
        std::string peer;  // Formatted; set for peers that are not IPv4.
        std::uint64_t data_in = 0;
        std::uint64_t data_out = 0;
    };
    Extras& extras();
    // Application bytes in and out (Extras: an idle connection pays nothing).
    void count_data(std::size_t in, std::size_t out);
    std::unique_ptr<Extras> extras_;
    Instant accepted_at_;
    std::uint64_t id_;
    std::uint32_t slot_;
    std::uint32_t last_ping_ms_ = 0;  // Last token refill, ms since accept (wrapping).
    // When the queue went over the output budget, ms since accept + 1 (0: it is not).
    std::uint32_t over_budget_ms_ = 0;
    std::uint32_t peer_v4_ = 0;  // An IPv4 peer's address, network byte order.
    std::uint16_t peer_port_ = 0;
    ConnState state_ = ConnState::handshake;
    std::uint8_t ping_tokens_ = kPingBurst;
    bool greeted_ : 1 = false;   // HELLO received.
    bool pinged_ : 1 = false;    // A PING arrived (the bucket's clock has started).
    bool draining_ : 1 = false;  // Reading what the peer sent before a send error.
};
// Every idle connection pays for each byte: 216 is the most that still fits
// glibc's 224-byte allocation class.
static_assert(sizeof(Connection) <= 216, "Connection grew past its allocation class");

class Listener final : public LoopObject {
public:
    explicit Listener(Worker& worker, int fd) : worker_(worker), fd_(fd) {}
    ~Listener() override;
    void on_io(std::uint32_t events) override;
    // Accepting was paused after EMFILE; resume.
    void on_timer() override;
    void close_fd();
    int fd() const { return fd_; }

private:
    Worker& worker_;
    int fd_;
};

// The worker's one push timer (ServerOptions::push_rate): armed while some
// connection is being pushed to.
class PushTimer final : public LoopObject {
public:
    explicit PushTimer(Worker& worker) : worker_(worker) {}
    ~PushTimer() override = default;
    void on_io(std::uint32_t) override {}
    void on_timer() override;

private:
    Worker& worker_;
};

// Finishes a graceful shutdown when the flush deadline passes.
class ShutdownDeadline final : public LoopObject {
public:
    explicit ShutdownDeadline(Worker& worker) : worker_(worker) {}
    ~ShutdownDeadline() override = default;
    void on_io(std::uint32_t) override {}
    void on_timer() override;

private:
    Worker& worker_;
};

struct SessionRef {
    std::uint32_t worker;
    std::uint32_t slot;
    std::uint64_t conn;
};

}  // namespace

struct Server::Impl {
    ServerOptions options;
    ServerCallbacks callbacks;
    net::Endpoint endpoint;
    std::vector<std::unique_ptr<Worker>> workers;
    runtime::ServerMetrics metrics;
    std::mutex sessions_mutex;
    std::unordered_map<std::string, SessionRef> sessions;
    std::atomic<std::uint64_t> next_conn_id{1};
    std::atomic<bool> stop_requested{false};
    std::unique_ptr<runtime::HttpEndpoint> http;

    void emit(const Event& e) const {
        if (callbacks.on_event) callbacks.on_event(e);
    }
    void take_over_session(const std::string& id, SessionRef now_owner);
    std::string metrics_text_unlocked() const;
    std::string connections_json_unlocked() const;
    void release_session(const std::string& id, SessionRef owner);
};

namespace {

constexpr std::size_t kScratchSize = 64 * 1024;
constexpr int kMaxReadsPerEvent = 16;     // 1 MiB per connection per turn: one busy peer cannot starve the rest.
constexpr int kMaxAcceptsPerEvent = 256;  // Same for a connect storm.
constexpr Duration kAcceptPause = Duration::milliseconds(100);
constexpr Duration kShutdownFlush = Duration::milliseconds(1500);
// io_uring: how long a closed connection's last output may wait behind a send
// still in flight before the socket is shut down regardless.
constexpr Duration kCloseLinger = Duration::milliseconds(250);
// Push: the timer runs at the loop tick but never more often than this.
constexpr Duration kMinPushInterval = Duration::milliseconds(10);
// Push credit earned in one turn is capped: a loop that woke late (or was
// stalled) sends at most this much time's worth, not a burst of everything
// it missed. The rate is exact as long as turns come sooner than this.
constexpr Duration kMaxPushCredit = Duration::milliseconds(100);
// A push chunk (DATA payload, or raw bytes per send) is at most this, and at
// most 10 ms worth of the rate, so slow rates still arrive as a steady stream.
constexpr std::size_t kMaxPushChunk = 16 * 1024;

thread_local Worker* tls_worker = nullptr;

class Worker {
public:
    Worker(Server::Impl& server, std::size_t index, std::unique_ptr<EventLoop> loop, int listen_fd)
        : server_(server),
          index_(index),
          loop_(std::move(loop)),
          listener_(*this, listen_fd),
          shutdown_(*this),
          push_timer_(*this) {
        scratch_.resize(kScratchSize);
        loop_->set_stall_callback([this](Duration lag) { on_stall(lag); });
        if (options().push_rate > 0) prepare_push();
    }
    ~Worker() {
        for (auto& conn : slots_) {
            if (conn) loop_->cancel(*conn);
        }
        // Every limbo socket is shut down, so what the ring still holds for
        // it fails (EPIPE, end of stream) without touching these buffers.
        for (Connection* conn : limbo_) {
            loop_->cancel(*conn);
            delete conn;
        }
        loop_->cancel(listener_);
        loop_->cancel(shutdown_);
        loop_->cancel(push_timer_);
    }

    Result<void> start() { return loop_->add(listener_.fd(), EPOLLIN, &listener_); }
    void run() {
        tls_worker = this;
        loop_->run();
        tls_worker = nullptr;
    }

    EventLoop& loop() { return *loop_; }
    Server::Impl& server() { return server_; }
    const ServerOptions& options() const { return server_.options; }
    std::size_t index() const { return index_; }
    std::vector<std::uint8_t>& scratch() { return scratch_; }
    std::vector<std::uint8_t>& encode_buffer() { return encode_; }
    bool shutting_down() const { return shutting_down_; }

    void adopt(int fd, const sockaddr_storage& peer) {
        const std::uint64_t id = server_.next_conn_id.fetch_add(1, std::memory_order_relaxed);
        std::uint32_t slot = static_cast<std::uint32_t>(slots_.size());
        if (!free_slots_.empty()) {
            slot = free_slots_.back();
            free_slots_.pop_back();
        } else {
            slots_.emplace_back();
        }
        slots_[slot] = std::make_unique<Connection>(*this, fd, peer, id, slot, loop_->now(), options().idle_timeout);
        ++live_;
        slots_[slot]->start();
    }

    // Moves a closed connection out of its slot; it is freed after this turn,
    // because later events of the same epoll batch may still name it.
    void retire(std::uint32_t slot) {
        graveyard_.push_back(std::move(slots_[slot]));
        free_slots_.push_back(slot);
        --live_;
        if (graveyard_.size() == 1) {
            loop_->post([this] { bury(); });
        }
        if (shutting_down_ && live_ == 0) loop_->stop();
    }

    // Frees the closed connections, except those the ring still has
    // operations for: they wait in limbo_ until their last completion.
    void bury() {
        for (auto& conn : graveyard_) {
            if (conn->ring_busy()) {
                limbo_.insert(conn.release());
            } else {
                loop_->cancel(*conn);  // A linger timer, if any.
            }
        }
        graveyard_.clear();
    }
    // A closed connection's last ring operation completed. One still in the
    // graveyard is freed with it.
    void release(Connection* conn) {
        if (limbo_.erase(conn) == 0) return;
        loop_->cancel(*conn);
        delete conn;
    }

    Connection* find(std::uint32_t slot, std::uint64_t id) {
        if (slot >= slots_.size() || !slots_[slot] || slots_[slot]->id() != id) return nullptr;
        return slots_[slot].get();
    }

    template <class F>
    void for_each_connection(F&& f) {
        for (auto& conn : slots_) {
            if (conn) f(*conn);
        }
    }

    void begin_shutdown() {
        if (shutting_down_) return;
        shutting_down_ = true;
        listener_.close_fd();
        std::vector<Connection*> all;
        for_each_connection([&](Connection& c) { all.push_back(&c); });
        for (Connection* c : all) {
            if (options().mode == ServerMode::framed && c->state() == ConnState::open) {
                c->send_frame(Close{static_cast<std::uint16_t>(CloseCode::shutdown), "server shutting down"}, true,
                              /*best_effort=*/true);
            }
            if (c->state() != ConnState::closed && !c->output_pending()) c->close(DisconnectReason::shutdown);
        }
        if (live_ == 0) {
            loop_->stop();
            return;
        }
        loop_->schedule(shutdown_, loop_->now() + kShutdownFlush);
    }

    // Starts pushing filler to `conn`, which just became open (raw: accepted;
    // framed: greeted). Arms the push timer if it was idle.
    void start_push(const Connection& conn) {
        assert(options().push_rate > 0 && !push_chunk_.empty());
        if (shutting_down_) return;
        pushing_.push_back({conn.slot(), conn.id()});
        if (push_timer_.armed()) return;
        // A fresh start earns no credit for the time nobody was being pushed to.
        push_last_ = loop_->now();
        push_credit_bytes_ = 0;
        push_credit_remainder_ = 0;
        loop_->schedule(push_timer_, push_last_ + push_interval_);
    }

    // The push timer fired: credit the time since the last push at the rate,
    // send whole chunks to every connection being pushed to, carry the rest.
    //
    // One timer for the whole loop, so it takes one of the loop's
    // max_timers_per_turn however many connections there are (a timer per
    // connection would crowd out the handshake and heartbeat deadlines). The
    // walk is O(connections pushed to) per tick: fine for tests and labs, not
    // for 1M connections. It visits `pushing_` (open connections only, closed
    // ones dropped as they are met) rather than the slot table, so a loop that
    // once held many connections does not pay for its empty slots every tick.
    // Per connection a turn sends at most kMaxPushCredit worth; a peer that
    // does not read reaches the output budget and is closed long before that.
    void push_tick() {
        if (shutting_down_) {
            pushing_.clear();  // Let the shutdown flush drain; nothing new goes out.
            return;
        }
        const Instant now = loop_->now();
        const Duration elapsed = std::clamp(now - push_last_, Duration::zero(), kMaxPushCredit);
        push_last_ = now;
        // rate <= 2^30 B/s and elapsed <= 10^8 ns: the product stays below 2^57.
        // The sub-byte remainder is carried, so the long-run rate is exact.
        const std::uint64_t rate = options().push_rate;
        assert(rate <= kMaxPushRate);
        const std::uint64_t scaled = rate * static_cast<std::uint64_t>(elapsed.ns()) + push_credit_remainder_;
        push_credit_bytes_ += scaled / 1'000'000'000u;
        push_credit_remainder_ = scaled % 1'000'000'000u;
        const std::size_t chunk_payload = push_chunk_payload_;
        const std::uint64_t chunks = push_credit_bytes_ / chunk_payload;
        push_credit_bytes_ -= chunks * chunk_payload;
        LIFELINE_CHECK(push_credit_bytes_ < chunk_payload, "push credit left over is less than one chunk");

        // Compacts in place as it goes. Entries appended meanwhile (none are
        // expected: only a HELLO adds one) are kept after the walked part.
        const std::size_t walked = pushing_.size();
        std::size_t kept = 0;
        for (std::size_t i = 0; i < walked; ++i) {
            const PushRef ref = pushing_[i];
            Connection* conn = find(ref.slot, ref.conn);
            if (conn == nullptr || conn->state() != ConnState::open) continue;
            for (std::uint64_t k = 0; k < chunks && conn->state() == ConnState::open && !conn->over_budget(); ++k) {
                conn->push_filler(push_chunk_, chunk_payload);
            }
            if (conn->state() == ConnState::open) pushing_[kept++] = ref;
        }
        pushing_.erase(pushing_.begin() + static_cast<std::ptrdiff_t>(kept),
                       pushing_.begin() + static_cast<std::ptrdiff_t>(walked));
        if (!pushing_.empty()) loop_->schedule(push_timer_, now + push_interval_);
    }

    void finish_shutdown() {
        std::vector<Connection*> all;
        for_each_connection([&](Connection& c) { all.push_back(&c); });
        for (Connection* c : all) c->close(DisconnectReason::shutdown);
        loop_->stop();
    }

    nlohmann::json describe_connections() {
        nlohmann::json out = nlohmann::json::array();
        for_each_connection([&](Connection& c) { out.push_back(c.describe(loop_->now())); });
        return out;
    }

private:
    struct PushRef {
        std::uint32_t slot;
        std::uint64_t conn;
    };

    // Builds the one chunk every push sends: a DATA frame (framed) or plain
    // bytes (raw) of printable filler, so a person watching with nc sees lines.
    void prepare_push() {
        const ServerOptions& o = options();
        push_interval_ = std::max(o.tick, kMinPushInterval);
        std::size_t payload = static_cast<std::size_t>(std::min<std::uint64_t>(kMaxPushChunk, o.push_rate / 100));
        if (o.mode == ServerMode::framed) payload = std::min(payload, o.max_body_size);
        payload = std::max<std::size_t>(payload, 1);
        push_chunk_payload_ = payload;
        std::vector<std::uint8_t> filler(payload);
        static constexpr std::string_view kLine = "lifeline push filler: a stand-in for a push gateway's traffic\n";
        for (std::size_t i = 0; i < payload; ++i) filler[i] = static_cast<std::uint8_t>(kLine[i % kLine.size()]);
        if (o.mode == ServerMode::raw) {
            push_chunk_ = std::move(filler);
            return;
        }
        // Cannot fail: the payload is within max_body_size.
        [[maybe_unused]] const Result<void> r = append_frame(push_chunk_, Data{filler}, o.max_body_size);
        assert(r.ok());
    }

    void on_stall(Duration lag) {
        server_.metrics.stalls_total.fetch_add(1, std::memory_order_relaxed);
        for_each_connection([&](Connection& c) { c.forgive_stall(loop_->now(), lag); });
        Event e;
        e.kind = EventKind::stall;
        e.silence = lag;
        e.message = "event loop " + std::to_string(index_) + " woke " + to_string(lag) +
                    " late; silence during the stall is not held against peers";
        server_.emit(e);
    }

    Server::Impl& server_;
    std::size_t index_;
    std::unique_ptr<EventLoop> loop_;
    Listener listener_;
    ShutdownDeadline shutdown_;
    // A slab, not a map: 8 bytes per connection instead of a hash node.
    std::vector<std::unique_ptr<Connection>> slots_;
    std::vector<std::uint32_t> free_slots_;
    std::size_t live_ = 0;
    std::vector<std::unique_ptr<Connection>> graveyard_;
    std::unordered_set<Connection*> limbo_;
    std::vector<std::uint8_t> scratch_;
    std::vector<std::uint8_t> encode_;
    // Push (ServerOptions::push_rate); all unused when it is 0.
    PushTimer push_timer_;
    std::vector<PushRef> pushing_;          // Open connections being pushed to; closed ones linger until met.
    std::vector<std::uint8_t> push_chunk_;  // What one push sends: an encoded DATA frame, or raw bytes.
    std::size_t push_chunk_payload_ = 1;    // Filler bytes in push_chunk_ (what the rate counts).
    Duration push_interval_ = kMinPushInterval;
    Instant push_last_;                        // When credit was last earned.
    std::uint64_t push_credit_bytes_ = 0;      // Earned, not yet sent (less than one chunk between ticks).
    std::uint64_t push_credit_remainder_ = 0;  // Byte-nanoseconds short of the next whole byte.
    bool shutting_down_ = false;
};

// ---- Listener ---------------------------------------------------------------

Listener::~Listener() { close_fd(); }

void Listener::close_fd() {
    if (fd_ < 0) return;
    worker_.loop().remove(fd_);
    ::close(fd_);
    fd_ = -1;
}

void Listener::on_io(std::uint32_t) {
    Server::Impl& server = worker_.server();
    for (int i = 0; i < kMaxAcceptsPerEvent && fd_ >= 0; ++i) {
        sockaddr_storage peer{};
        socklen_t peer_len = sizeof(peer);
        const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (server.metrics.connections_open.load(std::memory_order_relaxed) >=
                static_cast<std::int64_t>(server.options.max_connections)) {
                ::close(fd);  // Over the limit: shed it rather than grow without bound.
                server.metrics.accept_errors_total.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            worker_.adopt(fd, peer);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        server.metrics.accept_errors_total.fetch_add(1, std::memory_order_relaxed);
        Event e;
        e.kind = EventKind::error;
        e.message = "accept: " + std::string(std::strerror(errno));
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // A level-triggered listener with a pending connection we cannot take
            // would wake us forever: stop listening for a moment instead of spinning.
            e.message += "; accepting paused for " + to_string(kAcceptPause);
            if (auto r = worker_.loop().modify(fd_, 0, this); !r) {
                // Still watched, it would wake us at once: take it out instead
                // (on_timer() adds it back).
                worker_.loop().remove(fd_);
                e.message += " (" + r.error().message + ": unwatched instead)";
            }
            worker_.loop().schedule(*this, worker_.loop().now() + kAcceptPause);
        }
        server.emit(e);
        return;
    }
}

void Listener::on_timer() {
    if (fd_ < 0) return;
    if (worker_.loop().modify(fd_, EPOLLIN, this)) return;
    // Unwatched after a failed pause (or MOD failing now): add it back, or say
    // why accepting stays paused and try again after another pause.
    if (worker_.loop().add(fd_, EPOLLIN, this)) return;
    Event e;
    e.kind = EventKind::error;
    e.message = "accept: cannot watch the listener again (" + std::string(std::strerror(errno)) + "); retrying in " +
                to_string(kAcceptPause);
    worker_.server().emit(e);
    worker_.loop().schedule(*this, worker_.loop().now() + kAcceptPause);
}

void ShutdownDeadline::on_timer() { worker_.finish_shutdown(); }

void PushTimer::on_timer() { worker_.push_tick(); }

// ---- Connection ---------------------------------------------------------------

Worker& Connection::worker() {
    LIFELINE_CHECK(tls_worker != nullptr, "a Connection is used on its loop thread only");
    return *tls_worker;
}

Connection::Connection(Worker& worker, int fd, const sockaddr_storage& peer, std::uint64_t id, std::uint32_t slot,
                       Instant now, Duration idle_timeout)
    : detector_(idle_timeout > Duration::zero() ? idle_timeout : worker.options().timeout, now),
      liveness_(LivenessConfig{worker.options().heartbeat, false}, detector_, now),
      decoder_(DecoderRole::server, DecoderLimits{worker.options().max_body_size}),
      socket_(fd, worker.options().mode == ServerMode::framed),
      accepted_at_(now),
      id_(id),
      slot_(slot) {
    if (peer.ss_family == AF_INET) {
        const auto& v4 = reinterpret_cast<const sockaddr_in&>(peer);
        peer_v4_ = v4.sin_addr.s_addr;
        peer_port_ = ntohs(v4.sin_port);
    } else if (peer.ss_family == AF_INET6) {
        const auto& v6 = reinterpret_cast<const sockaddr_in6&>(peer);
        extras().peer = net::format_address(AF_INET6, &v6.sin6_addr, ntohs(v6.sin6_port));
    }
}

Connection::Extras& Connection::extras() {
    if (!extras_) extras_ = std::make_unique<Extras>();
    return *extras_;
}

void Connection::count_data(std::size_t in, std::size_t out) {
    Extras& x = extras();
    x.data_in += in;
    x.data_out += out;
}

std::string Connection::peer() const {
    if (extras_ && !extras_->peer.empty()) return extras_->peer;
    return net::format_address(AF_INET, &peer_v4_, peer_port_);
}

// Connections are destroyed after close() (which cancelled the timer) or by
// their Worker, which cancels every timer first.
Connection::~Connection() = default;

Event Connection::event(EventKind kind) const {
    Event e;
    e.kind = kind;
    e.conn = id_;
    e.peer = peer();
    e.client_id = client_id();
    return e;
}

std::string Connection::client_id() const {
    if (extras_ && !extras_->chosen_id.empty()) return extras_->chosen_id;
    return greeted_ ? "c" + std::to_string(id_) : std::string();
}

Duration Connection::last_rtt() const {
    if (liveness_.rtt().has_sample()) return liveness_.rtt().smoothed();
    Result<net::TcpInfo> info = net::read_tcp_info(socket_.fd());
    return info ? info->rtt : Duration::zero();
}

void Connection::start() {
    Server::Impl& server = worker().server();
    const ServerOptions& o = server.options;
    server.metrics.accepted_total.fetch_add(1, std::memory_order_relaxed);
    server.metrics.connections_open.fetch_add(1, std::memory_order_relaxed);
    server.emit(event(EventKind::connect));
    if (auto k = net::apply_keepalive(socket_.fd(), o.keepalive); !k) {
        Event e = event(EventKind::error);
        e.message = k.error().message;
        server.emit(e);
        close(DisconnectReason::local_close, k.error().message);
        return;
    }
    // Ignored on purpose: TCP_NODELAY only makes small writes leave sooner; a
    // socket that refuses it (it cannot, once accepted) still works.
    [[maybe_unused]] auto nd = net::set_nodelay(socket_.fd());
    if (auto r = socket_.watch(worker().loop(), *this); !r) {
        close(DisconnectReason::local_close, r.error().message);
        return;
    }
    if (o.mode == ServerMode::framed) {
        // Absolute from accept: a HELLO dribbled a byte at a time cannot extend it.
        worker().loop().schedule(*this, accepted_at_ + o.handshake_timeout);
    } else {
        state_ = ConnState::open;
        if (o.idle_timeout > Duration::zero()) rearm();
        if (o.push_rate > 0) worker().start_push(*this);
    }
}

void Connection::rearm() {
    // Raw mode without --idle-timeout has no liveness timer at all.
    const ServerOptions& o = worker().options();
    const bool liveness_timer = o.mode == ServerMode::framed || o.idle_timeout > Duration::zero();
    Instant next = liveness_timer ? liveness_.next_deadline() : Instant::never();
    if (over_budget_ms_ != 0) next = std::min(next, over_budget_deadline());
    if (next.is_never()) {
        worker().loop().cancel(*this);
    } else {
        worker().loop().schedule(*this, next);
    }
}

void Connection::on_timer() {
    if (state_ == ConnState::closed) {
        socket_.abort_linger();
        return;
    }
    const ServerOptions& o = worker().options();
    const Instant now = worker().loop().now();
    if (state_ == ConnState::handshake) {
        Event e = event(EventKind::error);
        e.message = "no HELLO within " + to_string(o.handshake_timeout) + " of accept";
        worker().server().emit(e);
        worker().server().metrics.protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
        close_with_frame(DisconnectReason::protocol_error, CloseCode::handshake_timeout, e.message);
        return;
    }
    if (over_budget_ms_ != 0 && now >= over_budget_deadline()) {
        judge_stalled_output(now);
        if (state_ == ConnState::closed) return;
    }
    if (o.mode == ServerMode::raw && o.idle_timeout <= Duration::zero()) {
        rearm();
        return;
    }
    if (socket_.reading_paused()) credit_unread_input(now);
    const LivenessStep step = liveness_.on_timer(now);
    switch (step.action) {
        case LivenessAction::declare_dead: {
            const bool raw = o.mode == ServerMode::raw;
            Event e = event(EventKind::dead);
            e.reason = raw ? DisconnectReason::idle_timeout : DisconnectReason::heartbeat_timeout;
            e.silence = now - liveness_.last_received();
            e.budget = detector_.timeout();
            e.rtt = last_rtt();
            worker().server().metrics.detection_latency.observe(e.silence);
            worker().server().emit(e);
            if (raw) {
                close(DisconnectReason::idle_timeout);
            } else {
                close_with_frame(DisconnectReason::heartbeat_timeout, CloseCode::heartbeat_timeout,
                                 "nothing received for " + to_string(e.silence));
            }
            return;
        }
        case LivenessAction::send_ping:
            worker().server().metrics.heartbeats_out_total.fetch_add(1, std::memory_order_relaxed);
            send_frame(step.ping, true);
            break;
        case LivenessAction::none:
            break;
    }
    if (state_ != ConnState::closed) rearm();
}

void Connection::forgive_stall(Instant now, Duration lag) {
    if (state_ != ConnState::open) return;
    liveness_.on_local_stall(now);
    // PINGs that queued up during our stall are not abuse: the peer may have
    // sent one per allowed interval all along, and they arrive now at once.
    const std::int64_t refill_ms = std::max<std::int64_t>(1, worker().options().min_interval.ms());
    const std::int64_t queued = lag.ms() / refill_ms + 1;
    ping_tokens_ = static_cast<std::uint8_t>(std::min<std::int64_t>(UINT8_MAX, kPingBurst + queued));
    last_ping_ms_ = static_cast<std::uint32_t>((now - accepted_at_).ms());
    pinged_ = true;
    rearm();
}

void Connection::on_io(std::uint32_t events) {
    if (state_ == ConnState::closed) return;
    if (events & EPOLLERR) {
        close_on_socket_error(net::connect_result(socket_.fd()));
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) read_available();
    if (state_ != ConnState::closed && (events & EPOLLOUT)) flush();
}

void Connection::read_available() {
    std::vector<std::uint8_t>& scratch = worker().scratch();
    for (int i = 0; i < kMaxReadsPerEvent && state_ != ConnState::closed; ++i) {
        const StreamSocket::ReadResult r = socket_.read(scratch);
        if (!take_read(r, scratch) || r.bytes < scratch.size()) return;  // < scratch: drained.
    }
}

bool Connection::take_read(const StreamSocket::ReadResult& r, std::span<const std::uint8_t> bytes) {
    switch (r.status) {
        case StreamSocket::ReadStatus::data:
            handle_bytes(bytes.first(r.bytes));
            return true;
        case StreamSocket::ReadStatus::would_block:
            return false;
        case StreamSocket::ReadStatus::eof:
            // While draining after ECONNRESET, end of stream is only the
            // reset socket (its error already taken): the RST decides.
            if (!draining_) close(DisconnectReason::peer_closed);
            return false;
        case StreamSocket::ReadStatus::error:
            close_on_socket_error(r.error);
            return false;
    }
    return false;
}

void Connection::on_ring(const RingCompletion& c) {
    EventLoop& loop = worker().loop();
    if (c.op == RingOp::receive) {
        const StreamSocket::ReadResult r = socket_.received(loop, *this, c);
        if (state_ != ConnState::closed) take_read(r, c.bytes);
    } else {
        const StreamSocket::SentResult r = socket_.sent(loop, *this, c);
        if (state_ != ConnState::closed) after_send(r.written, r.error);
    }
    if (state_ == ConnState::closed && !socket_.ring_busy()) worker().release(this);  // May free this.
}

void Connection::on_ring_flush() {
    socket_.flush_turn(worker().loop(), *this);
    if (state_ == ConnState::closed && !socket_.ring_busy()) worker().release(this);  // May free this.
}

void Connection::close_on_socket_error(int err) {
    // A failed send may only echo a close already waiting in the receive
    // buffer (a CLOSE frame, a FIN): read that first so the reason is the peer's.
    // Not on an io_uring loop: its receive is armed, and earlier bytes may
    // still wait in the completion queue, so a read here could take later
    // bytes first (there, a rare send error can win over the peer's CLOSE).
    if (!draining_ && state_ != ConnState::closed && !socket_.served_by_ring() && (err == EPIPE || err == ECONNRESET)) {
        draining_ = true;
        read_available();
        draining_ = false;
        if (state_ == ConnState::closed) return;
    }
    Result<net::TcpInfo> info = net::read_tcp_info(socket_.fd());
    const DisconnectReason reason = net::classify_socket_error(err, info ? &*info : nullptr, output_pending());
    if (reason == DisconnectReason::slow_consumer) {
        // TCP_USER_TIMEOUT ended a live peer behind a zero window before our
        // own grace ran out (net::classify_socket_error).
        Event e = event(EventKind::error);
        e.message = "peer is not reading: the kernel's user timeout ended its zero window (" +
                    std::to_string(socket_.queued_bytes()) + " bytes still queued here)";
        worker().server().emit(e);
    }
    if (reason == DisconnectReason::keepalive_timeout || reason == DisconnectReason::user_timeout) {
        Event e = event(EventKind::dead);
        e.reason = reason;
        e.silence = worker().loop().now() - liveness_.last_received();
        const KeepalivePolicy& k = worker().options().keepalive;
        e.budget = reason == DisconnectReason::user_timeout ? k.user_timeout_value() : k.budget();
        e.rtt = last_rtt();
        worker().server().metrics.detection_latency.observe(e.silence);
        worker().server().emit(e);
    }
    close(reason, err != 0 ? std::strerror(err) : "");
}

void Connection::handle_bytes(std::span<const std::uint8_t> bytes) {
    const Instant now = worker().loop().now();
    const ServerOptions& o = worker().options();
    if (o.mode == ServerMode::raw) {
        liveness_.on_bytes_received(now);
        count_data(bytes.size(), o.echo ? bytes.size() : 0);
        if (worker().server().callbacks.on_message) worker().server().callbacks.on_message(id_, bytes);
        if (o.echo) transmit(bytes, false);
        return;
    }
    // Every byte is liveness, even part of a frame; the handshake has its own deadline.
    if (state_ == ConnState::open) liveness_.on_bytes_received(now);
    std::span<const std::uint8_t> input = bytes;
    while (state_ != ConnState::closed) {
        FrameDecoder::Step step = decoder_.next(input);
        if (step.error) {
            worker().server().metrics.protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
            Event e = event(EventKind::error);
            e.message = std::string(to_string(step.error->kind)) + ": " + step.error->detail;
            worker().server().emit(e);
            close_with_frame(DisconnectReason::protocol_error, CloseCode::protocol_error, e.message);
            return;
        }
        if (!step.frame) return;
        handle_frame(*step.frame);
    }
}

void Connection::handle_frame(const Frame& frame) {
    std::visit(
        [this](const auto& f) {
            using T = std::decay_t<decltype(f)>;
            if constexpr (std::is_same_v<T, Hello>) {
                handle_hello(f);
            } else if constexpr (std::is_same_v<T, Ping>) {
                handle_ping(f);
            } else if constexpr (std::is_same_v<T, Pong>) {
                if (auto rtt = liveness_.on_pong(worker().loop().now(), f)) worker().server().metrics.rtt.observe(*rtt);
            } else if constexpr (std::is_same_v<T, Data>) {
                auto& server = worker().server();
                count_data(f.payload.size(), server.options.echo ? f.payload.size() : 0);
                if (server.callbacks.on_message) server.callbacks.on_message(id_, f.payload);
                if (server.options.echo) send_frame(f, false);
            } else if constexpr (std::is_same_v<T, Close>) {
                close(DisconnectReason::peer_closed, f.reason);
            }
            // WELCOME never gets here: the server-role decoder rejects it.
        },
        frame);
}

void Connection::handle_hello(const Hello& hello) {
    const ServerOptions& o = worker().options();
    const Instant now = worker().loop().now();
    // Grant what was asked within the server's limits; 0 means "your default".
    Duration interval = hello.interval_ms == 0 ? o.heartbeat : Duration::milliseconds(hello.interval_ms);
    interval = std::clamp(interval, o.min_interval, o.max_timeout / 2);
    Duration timeout = hello.timeout_ms == 0 ? o.timeout : Duration::milliseconds(hello.timeout_ms);
    // A timeout must leave room for at least two heartbeats and the round trips between them.
    timeout = std::clamp(timeout, interval * 2, o.max_timeout);
    detector_ = FixedTimeoutDetector(timeout, now);
    liveness_ = LivenessMachine(LivenessConfig{interval, o.server_pings}, detector_, now);
    if (!hello.id.empty()) extras().chosen_id = hello.id;
    greeted_ = true;
    state_ = ConnState::open;
    send_frame(Welcome{kProtocolVersion, static_cast<std::uint32_t>(interval.ms()),
                       static_cast<std::uint32_t>(timeout.ms()), client_id()},
               true);
    if (state_ == ConnState::closed) return;
    Event e = event(EventKind::hello);
    e.interval = interval;
    e.timeout = timeout;
    worker().server().emit(e);
    if (!hello.id.empty())
        worker().server().take_over_session(hello.id, {static_cast<std::uint32_t>(worker().index()), slot_, id_});
    if (state_ == ConnState::closed) return;
    rearm();
    // After the WELCOME: no DATA ever precedes the handshake.
    if (o.push_rate > 0) worker().start_push(*this);
}

void Connection::handle_ping(const Ping& ping) {
    auto& server = worker().server();
    const Instant now = worker().loop().now();
    server.metrics.heartbeats_in_total.fetch_add(1, std::memory_order_relaxed);
    // Abuse protection (gRPC's too_many_pings, as a token bucket): a PING costs
    // a token; tokens come back at the fastest rate we allow, up to a small
    // burst. Refills are computed from elapsed time, so PINGs that queued up
    // while our loop was busy are paid for by the time that passed, and a
    // detected stall refills the bucket outright (forgive_stall).
    // 32-bit milliseconds since accept, wrapping: differences stay right for
    // gaps under 49 days, however old the connection is.
    const auto now_ms = static_cast<std::uint32_t>((now - accepted_at_).ms());
    const std::uint32_t refill_ms =
        static_cast<std::uint32_t>(std::max<std::int64_t>(1, server.options.min_interval.ms()));
    if (!pinged_) {
        pinged_ = true;
        last_ping_ms_ = now_ms;
    }
    const std::uint32_t earned = static_cast<std::uint32_t>(now_ms - last_ping_ms_) / refill_ms;
    if (earned > 0) {
        // Never below what a stall granted (forgive_stall may leave more than a burst).
        ping_tokens_ = static_cast<std::uint8_t>(
            std::max<std::uint32_t>(ping_tokens_, std::min<std::uint32_t>(kPingBurst, ping_tokens_ + earned)));
        last_ping_ms_ = ping_tokens_ == kPingBurst ? now_ms : last_ping_ms_ + earned * refill_ms;
    }
    if (ping_tokens_ == 0) {
        Event e = event(EventKind::error);
        e.message = "too many pings: more than " + std::to_string(kPingBurst) + " at once or one per " +
                    to_string(server.options.min_interval) + " sustained";
        server.metrics.protocol_errors_total.fetch_add(1, std::memory_order_relaxed);
        server.emit(e);
        close_with_frame(DisconnectReason::protocol_error, CloseCode::too_many_pings, e.message);
        return;
    }
    --ping_tokens_;
    server.metrics.heartbeats_out_total.fetch_add(1, std::memory_order_relaxed);
    send_frame(Pong{ping.seq, ping.sent_at}, true);
}

void Connection::send_frame(const Frame& frame, bool control, bool best_effort) {
    if (state_ == ConnState::closed) return;
    std::vector<std::uint8_t>& buf = worker().encode_buffer();
    buf.clear();
    if (auto r = append_frame(buf, frame, worker().options().max_body_size); !r) {
        Event e = event(EventKind::error);
        e.message = "cannot encode " + std::string(to_string(frame_type(frame))) + ": " + r.error().message;
        worker().server().emit(e);
        return;
    }
    transmit(buf, control, best_effort);
}

void Connection::transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort) {
    if (state_ == ConnState::closed) return;
    if (best_effort && socket_.backlog_bytes(worker().loop()) + bytes.size() > worker().options().output_budget) return;
    const StreamSocket::SendResult r = socket_.send(worker().loop(), *this, bytes, control);
    if (r.error != 0) {
        if (!best_effort) close_on_socket_error(r.error);
        return;
    }
    if (r.written_now > 0) liveness_.on_bytes_sent(worker().loop().now());
    check_backlog();
}

void Connection::check_backlog() {
    if (state_ != ConnState::open) return;
    EventLoop& loop = worker().loop();
    const std::size_t budget = worker().options().output_budget;
    // High and low water marks: past the budget reading stops, so an echo
    // (or anything the peer's input makes us send) cannot grow the queue by
    // more than one read, and it resumes at half the budget, with room to
    // spare. They count all that is queued (on an io_uring loop also a turn's
    // output not yet offered to the kernel). The slow-consumer clock runs
    // while reading is paused, or while what the kernel refused
    // (backlog_bytes()) is over the budget: output we generate ourselves
    // (push, PINGs) reaches it without any input.
    const std::size_t queued = socket_.queued_bytes();
    if (!socket_.reading_paused() && queued > budget) {
        socket_.pause_reading(loop, *this);
    } else if (socket_.reading_paused() && queued <= budget / 2) {
        socket_.resume_reading(loop, *this);
    }
    // It stops only once the queue is empty: while the kernel's send buffer
    // grows (autotuning, up to net.ipv4.tcp_wmem's maximum) it takes a stuck
    // peer's queue again and again, and every resume would restart the clock.
    const bool over =
        socket_.reading_paused() || socket_.backlog_bytes(loop) > budget || (over_budget_ms_ != 0 && queued > 0);
    if (over == (over_budget_ms_ != 0)) return;
    over_budget_ms_ = over ? static_cast<std::uint32_t>((loop.now() - accepted_at_).ms()) + 1 : 0;
    rearm();
}

Duration Connection::slow_consumer_grace() const {
    const ServerOptions& o = worker().options();
    if (o.slow_consumer_after > Duration::zero()) return o.slow_consumer_after;
    Duration grace = o.timeout;
    if (o.mode == ServerMode::framed) {
        grace = detector_.timeout();
    } else if (o.idle_timeout > Duration::zero()) {
        grace = o.idle_timeout;
    } else if (o.keepalive.enabled) {
        grace = o.keepalive.budget();
    }
    // TCP_USER_TIMEOUT also aborts a live peer behind a zero window (its
    // window probes count): judging at half of it makes the verdict ours.
    const Duration user_timeout = o.keepalive.user_timeout_value();
    if (user_timeout > Duration::zero()) grace = std::min(grace, user_timeout / 2);
    return grace;
}

Instant Connection::over_budget_deadline() const {
    return accepted_at_ + Duration::milliseconds(over_budget_ms_ - 1) + slow_consumer_grace();
}

void Connection::judge_stalled_output(Instant now) {
    const std::size_t queued = socket_.backlog_bytes(worker().loop());
    Result<net::TcpInfo> info = net::read_tcp_info(socket_.fd());
    if (info && net::classify_output_stall(*info) == net::OutputStall::path_dead) {
        // Not the peer's fault: unacknowledged data is being retransmitted
        // and nothing comes back. TCP_USER_TIMEOUT (user_timeout), keepalive
        // or heartbeats end it with the reason that is true; reading stays
        // paused, so the queue does not grow meanwhile. Look again later, in
        // case the path comes back and the peer then does not read.
        over_budget_ms_ = static_cast<std::uint32_t>((now - accepted_at_).ms()) + 1;
        return;
    }
    Event e = event(EventKind::error);
    e.message = "peer is not reading: " + std::to_string(queued) + " bytes queued for " +
                to_string(slow_consumer_grace()) + ", budget " + std::to_string(worker().options().output_budget);
    if (info) {
        e.message += "; its window is " + std::to_string(info->snd_wnd) + " bytes and it still acknowledges (" +
                     std::to_string(info->last_ack_received.ms()) + " ms ago)";
    }
    worker().server().emit(e);
    close(DisconnectReason::slow_consumer, e.message);
}

void Connection::credit_unread_input(Instant now) {
    // The peer's heartbeats wait unread behind the pause, and once our receive
    // window is full its kernel can only send window probes, further and
    // further apart (exponential backoff). So while the kernel's view is a live
    // peer that does not read (ACKs still come, window probes are answered),
    // the pause is ours and its silence is not held against the peer; a dead
    // path (net::classify_output_stall) is convicted as usual.
    Result<net::TcpInfo> info = net::read_tcp_info(socket_.fd());
    if (info && net::classify_output_stall(*info) == net::OutputStall::peer_not_reading) {
        liveness_.on_bytes_received(now);
    }
}

void Connection::flush() {
    const OutputQueue::FlushResult r = socket_.flush(worker().loop(), *this);
    after_send(r.written, r.error);
}

void Connection::after_send(std::size_t written, int error) {
    if (written > 0) liveness_.on_bytes_sent(worker().loop().now());
    if (error != 0) {
        close_on_socket_error(error);
        return;
    }
    // Shutting down: the CLOSE frame (and whatever was before it) is out.
    if (!output_pending() && worker().shutting_down()) {
        close(DisconnectReason::shutdown);
        return;
    }
    check_backlog();
}

void Connection::close_with_frame(DisconnectReason reason, CloseCode code, const std::string& text) {
    if (worker().options().mode == ServerMode::framed && state_ != ConnState::closed) {
        std::string reason_text = text.substr(0, kMaxCloseReasonSize);
        // Cut at a character boundary so the frame stays valid UTF-8.
        while (!reason_text.empty() && !is_valid_utf8(reason_text)) reason_text.pop_back();
        send_frame(Close{static_cast<std::uint16_t>(code), reason_text}, true, /*best_effort=*/true);
    }
    close(reason, text);
}

void Connection::close(DisconnectReason reason, const std::string& message) {
    if (state_ == ConnState::closed) return;
    socket_.send_before_close();  // First, so the event's bytes_out counts it.
    Server::Impl& server = worker().server();
    Event e = event(EventKind::closed);
    e.reason = reason;
    e.duration = worker().loop().now() - accepted_at_;
    e.bytes_in = socket_.bytes_in();
    e.bytes_out = socket_.bytes_out();
    e.bytes_unsent = socket_.queued_bytes();
    e.data_in = extras_ ? extras_->data_in : 0;
    e.data_out = extras_ ? extras_->data_out : 0;
    e.message = message;
    state_ = ConnState::closed;
    server.metrics.count_closed(reason);
    server.metrics.connections_open.fetch_sub(1, std::memory_order_relaxed);
    server.emit(e);
    if (extras_ && !extras_->chosen_id.empty())
        server.release_session(extras_->chosen_id, {static_cast<std::uint32_t>(worker().index()), slot_, id_});
    worker().loop().cancel(*this);
    // A send still in flight delays the FIN (and what follows it) a little;
    // the timer bounds it for a peer that does not read.
    if (socket_.close(worker().loop())) worker().loop().schedule(*this, worker().loop().now() + kCloseLinger);
    worker().retire(slot_);
}

nlohmann::json Connection::describe(Instant now) const {
    const Result<net::EffectiveKeepalive> ka = net::read_keepalive(socket_.fd());
    nlohmann::json j{
        {"conn", id_},
        {"peer", peer()},
        {"id", client_id()},
        {"state", state_ == ConnState::handshake ? "handshake" : "open"},
        {"age_ms", (now - accepted_at_).ms_f()},
        {"last_received_ms_ago", (now - liveness_.last_received()).ms_f()},
        {"rtt_ms", last_rtt().ms_f()},
        {"suspicion", liveness_.suspicion(now)},
        {"timeout_ms", detector_.timeout().ms_f()},
        {"bytes_in", socket_.bytes_in()},
        {"bytes_out", socket_.bytes_out()},
    };
    if (ka) {
        j["keepalive"] = {{"enabled", ka->enabled},
                          {"idle_s", ka->idle.ns() / 1'000'000'000},
                          {"interval_s", ka->interval.ns() / 1'000'000'000},
                          {"count", ka->count},
                          {"user_timeout_ms", ka->user_timeout.ms()}};
    }
    return j;
}

}  // namespace

// ---- Sessions -----------------------------------------------------------------

void Server::Impl::take_over_session(const std::string& id, SessionRef now_owner) {
    std::optional<SessionRef> previous;
    {
        std::lock_guard lock(sessions_mutex);
        auto [it, inserted] = sessions.try_emplace(id, now_owner);
        if (!inserted) {
            previous = it->second;
            it->second = now_owner;
        }
    }
    if (!previous) return;
    // The old connection may live on another loop: close it there.
    Worker& owner = *workers[previous->worker];
    const std::uint64_t old_conn = previous->conn;
    const std::uint32_t old_slot = previous->slot;
    auto close_old = [&owner, old_conn, old_slot] {
        if (Connection* c = owner.find(old_slot, old_conn)) {
            c->close_with_frame(DisconnectReason::session_replaced, CloseCode::session_replaced,
                                "the same client id connected again");
        }
    };
    if (previous->worker == now_owner.worker) {
        close_old();
    } else {
        owner.loop().post(close_old);
    }
}

void Server::Impl::release_session(const std::string& id, SessionRef owner) {
    std::lock_guard lock(sessions_mutex);
    auto it = sessions.find(id);
    if (it != sessions.end() && it->second.worker == owner.worker && it->second.conn == owner.conn) sessions.erase(it);
}

// ---- Server -------------------------------------------------------------------

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(const ServerOptions& options, ServerCallbacks callbacks) {
    if (auto v = options.validate(); !v) return v.error();
    Result<net::Endpoint> endpoint = net::parse_endpoint(options.listen);
    if (!endpoint) return Error{"--listen: " + endpoint.error().message};
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    impl->callbacks = std::move(callbacks);
    impl->endpoint = *endpoint;
    for (int i = 0; i < options.threads; ++i) {
        // Port 0: the first bind picks one; the other loops join it.
        Result<int> fd = net::listen_tcp(impl->endpoint, /*reuse_port=*/true, SOMAXCONN);
        if (!fd) return fd.error();
        if (i == 0) {
            Result<net::Endpoint> bound = net::parse_endpoint(net::local_address(*fd));
            if (bound) impl->endpoint = *bound;
        }
        runtime::EventLoopConfig loop_config;
        loop_config.tick = options.tick;
        loop_config.stall_threshold = options.stall_threshold;
        loop_config.use_io_uring = options.io == IoBackend::uring;
        Result<std::unique_ptr<EventLoop>> loop = EventLoop::create(loop_config);
        if (!loop) {
            ::close(*fd);
            return loop.error();
        }
        impl->workers.push_back(std::make_unique<Worker>(*impl, static_cast<std::size_t>(i), std::move(*loop), *fd));
        if (auto s = impl->workers.back()->start(); !s) return s.error();
    }
    if (!options.http.empty()) {
        Impl* raw = impl.get();
        Result<std::unique_ptr<runtime::HttpEndpoint>> http = runtime::HttpEndpoint::start(
            options.http, [raw] { return raw->metrics_text_unlocked(); },
            [raw] { return raw->connections_json_unlocked(); });
        if (!http) return Error{"--http: " + http.error().message};
        impl->http = std::move(*http);
    }
    return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::run() {
    Event listening;
    listening.kind = EventKind::listening;
    listening.message = impl_->endpoint.to_string();
    impl_->emit(listening);
    if (impl_->http) {
        listening.message = impl_->http->url();  // The metrics endpoint, port resolved.
        impl_->emit(listening);
    }
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < impl_->workers.size(); ++i) {
        threads.emplace_back([this, i] { impl_->workers[i]->run(); });
    }
    // A stop() that came before run() still counts.
    if (impl_->stop_requested.load()) stop();
    impl_->workers[0]->run();
    for (auto& t : threads) t.join();
}

void Server::stop() {
    impl_->stop_requested.store(true);
    for (auto& w : impl_->workers) {
        Worker* worker = w.get();
        worker->loop().post([worker] { worker->begin_shutdown(); });
    }
}

std::string Server::local_address() const { return impl_->endpoint.to_string(); }

std::string Server::metrics_text() const { return impl_->metrics_text_unlocked(); }

std::string Server::connections_json() const { return impl_->connections_json_unlocked(); }

std::string Server::Impl::metrics_text_unlocked() const {
    Duration lag;
    for (const auto& w : workers) lag = std::max(lag, w->loop().max_lag());
    return metrics.prometheus_text(lag);
}

std::string Server::Impl::connections_json_unlocked() const {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& w : workers) {
        auto promise = std::make_shared<std::promise<nlohmann::json>>();
        std::future<nlohmann::json> future = promise->get_future();
        Worker* worker = w.get();
        worker->loop().post([worker, promise] { promise->set_value(worker->describe_connections()); });
        // A loop that does not answer within a second is stuck; say so rather than hang.
        if (future.wait_for(std::chrono::seconds(1)) != std::future_status::ready) {
            all.push_back({{"error", "event loop " + std::to_string(worker->index()) + " did not answer"}});
            continue;
        }
        for (auto& c : future.get()) all.push_back(std::move(c));
    }
    return all.dump();
}

}  // namespace lifeline
