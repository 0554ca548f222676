// One of the client's connections, across its attempts: the TCP connect and
// its deadline, then a ClientSession (every protocol rule) driven over a
// StreamSocket with the loop's time, and (with reconnect) the backoff between
// attempts. Raw connections run a raw session: no handshake, no heartbeats,
// no timer once connected. Internal to src/runtime.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "lifeline/client.hpp"
#include "lifeline/engine/client_session.hpp"
#include "lifeline/engine/tls.hpp"
#include "lifeline/testing.hpp"
#include "net/endpoint.hpp"
#include "runtime/event_loop.hpp"
#include "runtime/stream_socket.hpp"

namespace lifeline::runtime {

class ClientConnection;

}  // namespace lifeline::runtime

namespace lifeline {

struct Client::Impl {
    static constexpr std::size_t kScratchSize = 64 * 1024;

    ClientOptions options;
    ClientCallbacks callbacks;
    testing::ClientFaults faults;
    net::Endpoint endpoint;
    std::vector<net::Endpoint> sources;
    std::unique_ptr<runtime::EventLoop> loop;
    std::vector<std::unique_ptr<runtime::ClientConnection>> conns;
    std::mt19937_64 rng;
    std::vector<std::uint8_t> scratch = std::vector<std::uint8_t>(kScratchSize);
    std::uint64_t next_conn_number = 1;
    int finished = 0;
    bool stopping = false;
    bool reading_stopped = false;  // stop_reading() was called (sticky). Loop thread only.
    // testing::abandon(): sockets given up but kept open, closed with the client.
    std::vector<int> abandoned_fds;
    std::shared_ptr<TlsContext> tls;  // options.tls: loaded once, shared by every connection.
    std::string tls_server_name;

    Impl() = default;
    Impl(const Impl&) = delete;
    Impl& operator=(const Impl&) = delete;
    ~Impl() {
        for (int fd : abandoned_fds) ::close(fd);
    }

    void emit(const Event& e) const {
        if (callbacks.on_event) callbacks.on_event(e);
    }
    void connection_finished() {
        if (++finished == static_cast<int>(conns.size())) loop->stop();
    }
};

}  // namespace lifeline

namespace lifeline::runtime {

class ClientConnection final : public LoopObject {
public:
    ClientConnection(Client::Impl& client, int index);
    ~ClientConnection() override { client_.loop->cancel(*this); }

    void start();
    // The first connect, `delay` from now (the ramp).
    void start_after(Duration delay);
    void on_io(std::uint32_t events) override;
    void on_timer() override;
    // Application data (dropped unless open).
    void send_data(std::span<const std::uint8_t> payload);
    void stop();
    // Client::stop_reading() reached this connection (reading_stopped is already set).
    void stop_reading();
    void silence();
    // testing::abandon(): the socket stays open (a dup), the connection ends.
    void abandon();
    void forgive_stall(Instant now);

private:
    enum class State : std::uint8_t { waiting, connecting, handshake, open, finished };

    bool raw() const { return client_.options.mode == ClientMode::raw; }
    void on_connected();
    void read_available();
    // Hands what the session produced to the socket and the application.
    void drain();
    void on_session_event(SessionEvent& e);
    void on_opened(const SessionEvent& e);
    void on_dead(const SessionEvent& e);
    // Writes (or queues) bytes the session encoded; with TLS, as records.
    void transmit(std::span<const std::uint8_t> bytes, bool control, bool best_effort);
    void write_to_socket(std::span<const std::uint8_t> bytes, bool control, bool best_effort);
    // TLS: ciphertext read in, plaintext to the session; false when the connection ended.
    bool take_tls(std::span<const std::uint8_t> ciphertext);
    void send_ciphertext(bool best_effort);
    void flush();
    // With reading stopped: takes EPOLLIN back out of the socket's interest.
    void apply_read_interest();
    void rearm();
    void fail_socket(int err);
    // Ends this connection or attempt; reconnects after a backoff if asked to.
    void down(DisconnectReason reason, const std::string& message);
    void schedule_reconnect();
    Event event(EventKind kind) const;
    bool socket_open() const { return socket_ && socket_->open(); }

    Client::Impl& client_;
    int index_;
    ClientSessionConfig config_;  // Per connection: the id has its "-N" suffix.
    std::optional<ClientSession> session_;
    std::optional<StreamSocket> socket_;
    std::unique_ptr<TlsStream> tls_;  // options.tls: this attempt's TLS state.
    std::string peer_;
    Instant started_at_;        // The current attempt's connect began.
    Instant connected_at_;      // Its TCP connect completed.
    std::uint64_t number_ = 0;  // Event "conn" number of the current attempt.
    // Application bytes of the current attempt (DATA payloads; raw: every byte).
    std::uint64_t data_in_ = 0;
    std::uint64_t data_out_ = 0;
    int attempt_ = 0;
    State state_ = State::waiting;
    bool draining_ = false;
    bool silent_ = false;  // silence(): sends nothing, judges nothing, still reads.
};

}  // namespace lifeline::runtime

namespace lifeline::runtime {

// The session config of connection `index` (its id gets a "-N" suffix when
// there are several); ClientOptions::validate() checks the same one.
ClientSessionConfig session_config(const ClientOptions& options, int index);

// Client::create() and testing::create_client(): checks and builds, no I/O yet.
Result<std::unique_ptr<Client::Impl>> make_client(const ClientOptions& options, ClientCallbacks callbacks,
                                                  testing::ClientFaults faults);

}  // namespace lifeline::runtime
