// Many ServerSessions on one TimingWheel: for a program with its own loop and
// thousands of connections, O(1) timers without writing them, and a ready
// list so a turn visits only the sessions that have something to hand over.
//
//   lifeline::ServerSessions sessions(config, now);
//   auto id = sessions.open(now);                      // at accept; map id <-> your socket
//   sessions.receive(id, bytes, now);                  // bytes arrived
//   sessions.handle_timeouts(now);                     // from your loop, at sessions.next_timeout()
//   while (auto id = sessions.poll_ready()) {          // sessions with output or events
//       ServerSession& s = *sessions.find(*id);
//       while (auto t = s.poll_transmit()) write_all(fd_of(*id), t->bytes);
//       while (auto e = s.poll_event()) { handle(*id, *e); }
//       if (s.state() == ServerSession::State::closed) sessions.remove(*id);  // close the socket too
//   }
//
// Call the container's inputs (receive, send, close, on_sent, ...) rather
// than the session's: they re-arm its timer and put it on the ready list.
// Reading a session's outputs and facts through find() is fine.
//
// Threads: none; one thread at a time (the loop's). Errors: send() returns the
// session's (not open, too large) or Errc::not_open for an unknown id; an
// unknown id elsewhere is ignored (it was removed). Ids are never reused.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lifeline/engine/server_session.hpp"
#include "lifeline/engine/timing_wheel.hpp"
#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

class ServerSessions {
public:
    using Id = std::uint64_t;  // Also the session's number (its default client id is "c<id>").

    // `config` must be valid and outlive the container. `tick`: timer
    // resolution; a deadline fires at most one tick late.
    ServerSessions(const ServerSessionConfig& config, Instant now, Duration tick = Duration::milliseconds(1));
    ~ServerSessions();
    ServerSessions(const ServerSessions&) = delete;
    ServerSessions& operator=(const ServerSessions&) = delete;

    // A new connection: its session starts now (raw mode: already open, its
    // `opened` event waits on the ready list).
    Id open(Instant now);
    // Forgets the session (closed, or its socket is gone: abort() it first
    // to get a `closed` event with the reason).
    void remove(Id id);

    void receive(Id id, std::span<const std::uint8_t> bytes, Instant now);
    Result<void> send(Id id, std::span<const std::uint8_t> payload);
    void close(Id id, CloseCode code, std::string_view text, DisconnectReason reason);
    void abort(Id id, DisconnectReason reason, std::string_view message);
    void on_sent(Id id, Instant now);
    void on_peer_alive(Id id, Instant now);
    // Our process stalled: every open session forgives the silence.
    void on_local_stall(Instant now, Duration lag);

    // Runs every session whose timeout is due; returns how many.
    std::size_t handle_timeouts(Instant now);
    // When handle_timeouts() next has work (never: no timers); may be early, never late.
    Instant next_timeout() const { return wheel_.next_expiry(); }

    // The next session that may have output or events since it was last
    // returned (each at most once per change).
    std::optional<Id> poll_ready();

    ServerSession* find(Id id);
    std::size_t size() const { return entries_.size(); }

private:
    struct Entry;
    Entry* entry(Id id);
    // After an input: re-arm the session's timer and mark it ready.
    void touched(Entry& e);

    const ServerSessionConfig* config_;
    TimingWheel wheel_;
    std::unordered_map<Id, std::unique_ptr<Entry>> entries_;
    std::vector<Id> ready_;
    std::size_t next_ready_ = 0;
    Id next_id_ = 1;
};

}  // namespace lifeline
