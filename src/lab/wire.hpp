// Internal: what a TCP segment seen on the lab's switch means for liveness.
// Pure logic over parsed headers, so it is unit-tested without a capture.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "lab/lab_result.hpp"

namespace lifeline::lab {

struct TcpSegment {
    std::uint32_t src_ip = 0;  // Host byte order.
    std::uint32_t dst_ip = 0;
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    std::uint16_t window = 0;  // Raw field: zero is zero whatever the scale.
    bool syn = false, fin = false, rst = false;
    std::uint32_t payload_bytes = 0;
};

// Parses an IPv4 packet (starting at the IP header) carrying TCP; nullopt for
// anything else or a truncated header.
std::optional<TcpSegment> parse_ipv4_tcp(const std::uint8_t* data, std::size_t length);

// Remembers, per direction of each flow, the highest sequence sent and the
// window the other side last advertised. A zero-length segment one below the
// highest sequence is a probe (RFC 1122 4.2.3.6 for keepalive; Linux sends
// zero-window probes the same way, so the peer's window tells them apart).
class WireClassifier {
public:
    WireKind classify(const TcpSegment& s);

private:
    struct Direction {
        bool seen = false;
        std::uint32_t next_seq = 0;  // Highest seq + length sent so far.
        std::uint16_t last_window = 1;
    };
    using Key = std::tuple<std::uint32_t, std::uint16_t, std::uint32_t, std::uint16_t>;
    std::map<Key, Direction> directions_;
};

}  // namespace lifeline::lab
