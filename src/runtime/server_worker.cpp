#include "runtime/server_worker.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "lifeline/check.hpp"
#include "lifeline/engine/codec.hpp"

namespace lifeline::runtime {

namespace {

constexpr std::size_t kScratchSize = 64 * 1024;
constexpr int kMaxAcceptsPerEvent = 256;  // Same for a connect storm.
constexpr Duration kAcceptPause = Duration::milliseconds(100);
constexpr Duration kShutdownFlush = Duration::milliseconds(1500);
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

}  // namespace

Worker::Worker(Server::Impl& server, std::size_t index, std::unique_ptr<EventLoop> loop, int listen_fd)
    : server_(server),
      index_(index),
      loop_(std::move(loop)),
      listener_(*this, listen_fd),
      shutdown_(*this, &Worker::finish_shutdown),
      push_timer_(*this, &Worker::push_tick),
      push_interval_(kMinPushInterval) {
    scratch_.resize(kScratchSize);
    loop_->set_stall_callback([this](Duration lag) { on_stall(lag); });
    if (server_.faults.push_rate > 0) prepare_push();
}

Worker::~Worker() {
    for_each_connection([&](Connection& c) { loop_->cancel(c); });
    for (Connection* conn : graveyard_) loop_->cancel(*conn);
    // Every limbo socket is shut down, so what the ring still holds for
    // it fails (EPIPE, end of stream) without touching these buffers. The
    // slab destroys them all.
    for (Connection* conn : limbo_) loop_->cancel(*conn);
    loop_->cancel(listener_);
    loop_->cancel(shutdown_);
    loop_->cancel(push_timer_);
}

Worker& Worker::current() {
    LIFELINE_CHECK(tls_worker != nullptr, "a Connection is used on its loop thread only");
    return *tls_worker;
}

Worker* Worker::on_this_thread() { return tls_worker; }

void Worker::for_each_open(const std::function<void(Connection&)>& fn) {
    // By index: fn may close connections (a slot empties) or, through a
    // callback, accept none (adopt() posts), so the slab does not move under us.
    for (std::uint32_t slot = 0; slot < slots_.end(); ++slot) {
        Connection* c = slots_.live(slot);
        if (c != nullptr && c->open() && !c->closed()) fn(*c);
    }
}

void Worker::run() {
    tls_worker = this;
    loop_->run();
    tls_worker = nullptr;
}

void WorkerTimer::on_timer() { (worker_.*fire_)(); }

void Worker::adopt(int fd, const sockaddr_storage& peer) {
    const std::uint64_t id = server_.next_conn_id.fetch_add(1, std::memory_order_relaxed);
    const std::uint32_t slot = slots_.next_slot();
    Connection& conn = slots_.emplace(slot, *this, fd, peer, id, loop_->now());
    ++live_;
    live_count_.store(live_, std::memory_order_relaxed);
    conn.start();
}

void Worker::retire(std::uint32_t slot) {
    graveyard_.push_back(slots_.live(slot));
    slots_.retire(slot);
    --live_;
    live_count_.store(live_, std::memory_order_relaxed);
    if (graveyard_.size() == 1) {
        loop_->post([this] { bury(); });
    }
    if (shutting_down_ && live_ == 0) loop_->stop();
}

void Worker::bury() {
    for (Connection* conn : graveyard_) {
        if (conn->ring_busy()) {
            limbo_.insert(conn);
        } else {
            loop_->cancel(*conn);  // A linger timer, if any.
            slots_.destroy(*conn);
        }
    }
    graveyard_.clear();
}

void Worker::release(Connection* conn) {
    if (limbo_.erase(conn) == 0) return;
    loop_->cancel(*conn);
    slots_.destroy(*conn);
}

Connection* Worker::find(std::uint32_t slot, std::uint64_t id) {
    Connection* c = slots_.live(slot);
    return c != nullptr && c->id() == id ? c : nullptr;
}

void Worker::begin_shutdown() {
    if (shutting_down_) return;
    shutting_down_ = true;
    listener_.close_fd();
    std::vector<Connection*> all;
    for_each_connection([&](Connection& c) { all.push_back(&c); });
    for (Connection* c : all) {
        c->shut_down();
    }
    if (live_ == 0) {
        loop_->stop();
        return;
    }
    loop_->schedule(shutdown_, loop_->now() + kShutdownFlush);
}

void Worker::start_push(const Connection& conn) {
    assert(server_.faults.push_rate > 0 && !push_chunk_.empty());
    if (shutting_down_) return;
    pushing_.push_back({conn.slot(), conn.id()});
    if (push_timer_.armed()) return;
    // A fresh start earns no credit for the time nobody was being pushed to.
    push_last_ = loop_->now();
    push_credit_bytes_ = 0;
    push_credit_remainder_ = 0;
    loop_->schedule(push_timer_, push_last_ + push_interval_);
}

void Worker::push_tick() {
    if (shutting_down_) {
        pushing_.clear();  // Let the shutdown flush drain; nothing new goes out.
        return;
    }
    const Instant now = loop_->now();
    const Duration elapsed = std::clamp(now - push_last_, Duration::zero(), kMaxPushCredit);
    push_last_ = now;
    // rate <= 2^30 B/s and elapsed <= 10^8 ns: the product stays below 2^57.
    // The sub-byte remainder is carried, so the long-run rate is exact.
    const std::uint64_t rate = server_.faults.push_rate;
    assert(rate <= testing::kMaxPushRate);
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
        if (conn == nullptr || !conn->open()) continue;
        for (std::uint64_t k = 0; k < chunks && conn->open() && !conn->over_budget(); ++k) {
            conn->push_filler(push_chunk_, chunk_payload);
        }
        if (conn->open()) pushing_[kept++] = ref;
    }
    pushing_.erase(pushing_.begin() + static_cast<std::ptrdiff_t>(kept),
                   pushing_.begin() + static_cast<std::ptrdiff_t>(walked));
    if (!pushing_.empty()) loop_->schedule(push_timer_, now + push_interval_);
}

void Worker::finish_shutdown() {
    std::vector<Connection*> all;
    for_each_connection([&](Connection& c) { all.push_back(&c); });
    for (Connection* c : all) c->finish_shutdown();
    loop_->stop();
}

nlohmann::json Worker::describe_connections() {
    nlohmann::json out = nlohmann::json::array();
    for_each_connection([&](Connection& c) { out.push_back(c.describe(loop_->now())); });
    return out;
}

void Worker::prepare_push() {
    const ServerOptions& o = options();
    push_interval_ = std::max(o.tick, kMinPushInterval);
    std::size_t payload =
        static_cast<std::size_t>(std::min<std::uint64_t>(kMaxPushChunk, server_.faults.push_rate / 100));
    if (o.mode != ServerMode::raw) payload = std::min(payload, o.max_body_size);
    payload = std::max<std::size_t>(payload, 1);
    push_chunk_payload_ = payload;
    std::vector<std::uint8_t> filler(payload);
    static constexpr std::string_view kLine = "lifeline push filler: a stand-in for a push gateway's traffic\n";
    for (std::size_t i = 0; i < payload; ++i) filler[i] = static_cast<std::uint8_t>(kLine[i % kLine.size()]);
    // Cannot fail: the payload is within max_body_size.
    [[maybe_unused]] const Result<void> r = ServerSession::encode_message(server_.session, filler, push_chunk_);
    assert(r.ok());
}

void Worker::on_stall(Duration lag) {
    server_.metrics.stalls_total.fetch_add(1, std::memory_order_relaxed);
    for_each_connection([&](Connection& c) { c.forgive_stall(loop_->now(), lag); });
    Event e;
    e.kind = EventKind::stall;
    e.silence = lag;
    e.message = "event loop " + std::to_string(index_) + " woke " + to_string(lag) +
                " late; silence during the stall is not held against peers";
    server_.emit(e);
}

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

}  // namespace lifeline::runtime
