// Reads the fleet presence that `lifeline serve --presence redis://...`
// writes (docs/PROTOCOL.md, "Fleet presence on Redis"): one id's record, who
// is online (on one gateway or all), and the online/offline event stream,
// through a consumer group so a restarted consumer loses nothing.
//
// Blocking (hiredis' synchronous API), for tools and back-office services;
// a gateway never reads through this. Threads: one reader per thread.
// Errors: Result, with Redis' own message or the connection's failure.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lifeline/result.hpp"
#include "lifeline/time.hpp"

namespace lifeline {

struct FleetPresence {
    std::string id;
    bool online = false;
    std::uint64_t epoch = 0;
    std::string gateway;  // Online: where; offline: where it last was.
    std::uint64_t conn = 0;
    std::string peer;
    std::int64_t since_ms = 0;  // Online: admitted at; offline: went offline at (Unix ms).
    std::string last_reason;    // Offline: why ("heartbeat_timeout", "gateway_lost", ...).
    std::int64_t detected_after_ms = 0;
};

struct PresenceEvent {
    std::string stream_id;  // "1700000000000-0"
    std::string event;      // "online" or "offline"
    std::string id;
    std::uint64_t epoch = 0;
    std::string reason;  // offline only
    std::int64_t detected_after_ms = 0;
    std::string gateway;
    std::string peer;
    std::int64_t time_ms = 0;
};

struct PresenceWatch {
    std::string stream = "lifeline:offline";
    std::string group;                        // "": no group (plain XREAD, from now or the start).
    std::string consumer = "lifeline-watch";  // With a group: restarts under the same name get their unacked events.
    bool from_start = false;                  // The whole stream, not only what comes from now on.
    std::string after;                        // No group: what comes after this stream id (overrides from_start).
    std::uint64_t count = 0;                  // Stop after this many events (0: never).
    Duration poll = Duration::milliseconds(500);  // Each blocking read's bound (a stop is noticed this fast).
};

class PresenceReader {
public:
    static Result<PresenceReader> connect(std::string_view redis_url, Duration timeout = Duration::seconds(5));
    PresenceReader(PresenceReader&&) noexcept;
    PresenceReader& operator=(PresenceReader&&) noexcept;
    ~PresenceReader();

    // nullopt: Redis has no record of `id` (never seen, or past its retention).
    Result<std::optional<FleetPresence>> get(std::string_view id);
    // Who is online, on `gateway` or (empty) on every gateway that has sessions.
    Result<std::vector<FleetPresence>> list(std::string_view gateway = {});
    // Calls `on_event` for each event (acked after it returns, with a group)
    // until it returns false, `count` events went by, or `stop()` says so.
    Result<void> watch(const PresenceWatch& options, const std::function<bool(const PresenceEvent&)>& on_event,
                       const std::function<bool()>& stop = {});

private:
    struct Impl;
    explicit PresenceReader(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline
