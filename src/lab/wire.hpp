// Internal: what a TCP segment seen on the lab's switch means for liveness.
// Pure logic over parsed headers, so it is unit-tested without a capture.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "lab/lab_result.hpp"

namespace lifeline::lab {

// An IPv6 address in network byte order; IPv4 as ::ffff:a.b.c.d (RFC 4291 2.5.5.2).
using IpAddress = std::array<std::uint8_t, 16>;
IpAddress ipv4_mapped(std::uint32_t host_order);
// Parses "198.18.0.1" or "2001:2::1"; nullopt when neither.
std::optional<IpAddress> parse_ip_address(const char* text);

struct TcpSegment {
    IpAddress src_ip{};
    IpAddress dst_ip{};
    std::uint16_t src_port = 0;
    std::uint16_t dst_port = 0;
    std::uint32_t seq = 0;
    std::uint32_t ack = 0;
    std::uint16_t window = 0;  // Raw field: zero is zero whatever the scale.
    bool syn = false, fin = false, rst = false;
    std::uint32_t payload_bytes = 0;
};

// Parses an IPv4 or IPv6 packet (starting at the IP header) carrying TCP;
// nullopt for anything else, a truncated header, or an IPv6 extension header
// (the lab's hosts send none).
std::optional<TcpSegment> parse_ip_tcp(const std::uint8_t* data, std::size_t length);

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
    using Key = std::tuple<IpAddress, std::uint16_t, IpAddress, std::uint16_t>;
    std::map<Key, Direction> directions_;
};

}  // namespace lifeline::lab
