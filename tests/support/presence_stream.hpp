// Test support: the fleet presence stream as a test reads it, through
// PresenceReader (XREAD BLOCK: waiting is on Redis' own events, each with a
// deadline). Every event read is kept, in stream order.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "lifeline/presence_reader.hpp"

namespace lifeline::testing {

class PresenceStream {
public:
    explicit PresenceStream(PresenceReader& reader) : reader_(&reader) {}
    void reset(PresenceReader& reader) {  // A new Redis (restarted empty): a new stream.
        reader_ = &reader;
        events_.clear();
    }

    // Reads until an event matches (one already read counts); nullopt at the deadline.
    std::optional<PresenceEvent> await(const std::function<bool(const PresenceEvent&)>& match,
                                       std::chrono::milliseconds limit) {
        for (const PresenceEvent& e : events_) {
            if (match(e)) return e;
        }
        const auto deadline = std::chrono::steady_clock::now() + limit;
        std::optional<PresenceEvent> found;
        PresenceWatch w;
        w.after = events_.empty() ? "0-0" : events_.back().stream_id;
        w.poll = Duration::milliseconds(100);
        const Result<void> r = reader_->watch(
            w,
            [&](const PresenceEvent& e) {
                events_.push_back(e);
                if (match(e)) found = e;
                return !found;
            },
            [&] { return std::chrono::steady_clock::now() >= deadline; });
        EXPECT_TRUE(r) << r.error().message;
        return found;
    }
    std::optional<PresenceEvent> await_event(const std::string& event, const std::string& id,
                                             std::chrono::milliseconds limit, const std::string& reason = "") {
        return await(
            [&](const PresenceEvent& e) {
                return e.event == event && e.id == id && (reason.empty() || e.reason == reason);
            },
            limit);
    }
    // Reads for `window`: what arrives meanwhile (an observation window, not a wait for something).
    void read_for(std::chrono::milliseconds window) {
        await([](const PresenceEvent&) { return false; }, window);
    }

    const std::vector<PresenceEvent>& events() const { return events_; }
    std::vector<PresenceEvent> of(const std::string& id, const std::string& event = "") const {
        std::vector<PresenceEvent> out;
        for (const PresenceEvent& e : events_) {
            if (e.id == id && (event.empty() || e.event == event)) out.push_back(e);
        }
        return out;
    }

    // Every id's events: in sequence order (2 x epoch for the online, + 1 for
    // the offline: epochs never go back, and an epoch's online comes before
    // its offline), an epoch online once and offline once at most.
    void expect_epoch_order_without_duplicates() const {
        std::map<std::string, std::uint64_t> last;  // The last sequence number, + 1.
        std::set<std::tuple<std::string, std::string, std::uint64_t>> seen;
        for (const PresenceEvent& e : events_) {
            const std::uint64_t seq = 2 * e.epoch + (e.event == "offline" ? 1 : 0) + 1;
            EXPECT_GE(seq, last[e.id]) << e.id << " went back: " << e.event << " of epoch " << e.epoch << " at "
                                       << e.stream_id;
            last[e.id] = std::max(last[e.id], seq);
            EXPECT_TRUE(seen.insert({e.id, e.event, e.epoch}).second)
                << e.id << " " << e.event << " epoch " << e.epoch << " twice (" << e.stream_id << ")";
        }
    }

private:
    PresenceReader* reader_;
    std::vector<PresenceEvent> events_;
};

// Milliseconds since the Unix epoch (what the stream's `time` fields are in).
inline std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace lifeline::testing
