#include "lab/wire.hpp"

#include <arpa/inet.h>

#include <algorithm>

namespace lifeline::lab {

namespace {

std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

// Serial number arithmetic (RFC 1982): a is before b.
bool before(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

// The TCP header at `tcp`, with `tcp_length` bytes of segment (header and
// payload, per the IP header) of which `captured` are present.
std::optional<TcpSegment> parse_tcp(const std::uint8_t* tcp, std::size_t captured, std::size_t tcp_length) {
    if (captured < 20 || tcp_length < 20) return std::nullopt;
    const std::size_t tcp_header = static_cast<std::size_t>(tcp[12] >> 4) * 4;
    if (tcp_header < 20 || tcp_length < tcp_header) return std::nullopt;
    TcpSegment s;
    s.src_port = be16(tcp);
    s.dst_port = be16(tcp + 2);
    s.seq = be32(tcp + 4);
    s.ack = be32(tcp + 8);
    s.fin = (tcp[13] & 0x01) != 0;
    s.syn = (tcp[13] & 0x02) != 0;
    s.rst = (tcp[13] & 0x04) != 0;
    s.window = be16(tcp + 14);
    // From the IP header's length, not the captured length: the capture keeps headers only.
    s.payload_bytes = static_cast<std::uint32_t>(tcp_length - tcp_header);
    return s;
}

std::optional<TcpSegment> parse_ipv4(const std::uint8_t* data, std::size_t length) {
    if (length < 20 || data[9] != 6) return std::nullopt;
    const std::size_t ip_header = static_cast<std::size_t>(data[0] & 0x0fu) * 4;
    const std::size_t total = be16(data + 2);
    if (ip_header < 20 || length < ip_header || total < ip_header) return std::nullopt;
    auto s = parse_tcp(data + ip_header, length - ip_header, total - ip_header);
    if (s) {
        s->src_ip = ipv4_mapped(be32(data + 12));
        s->dst_ip = ipv4_mapped(be32(data + 16));
    }
    return s;
}

std::optional<TcpSegment> parse_ipv6(const std::uint8_t* data, std::size_t length) {
    constexpr std::size_t kHeader = 40;
    if (length < kHeader || data[6] != 6) return std::nullopt;  // Next header TCP, no extension headers.
    auto s = parse_tcp(data + kHeader, length - kHeader, be16(data + 4));
    if (s) {
        std::copy_n(data + 8, 16, s->src_ip.begin());
        std::copy_n(data + 24, 16, s->dst_ip.begin());
    }
    return s;
}

}  // namespace

IpAddress ipv4_mapped(std::uint32_t host_order) {
    IpAddress a{};
    a[10] = a[11] = 0xff;
    for (int i = 0; i < 4; ++i) a[12 + i] = static_cast<std::uint8_t>(host_order >> (24 - 8 * i));
    return a;
}

std::optional<IpAddress> parse_ip_address(const char* text) {
    in_addr v4{};
    if (::inet_pton(AF_INET, text, &v4) == 1) return ipv4_mapped(ntohl(v4.s_addr));
    IpAddress a{};
    if (::inet_pton(AF_INET6, text, a.data()) == 1) return a;
    return std::nullopt;
}

std::optional<TcpSegment> parse_ip_tcp(const std::uint8_t* data, std::size_t length) {
    if (length < 1) return std::nullopt;
    switch (data[0] >> 4) {
        case 4:
            return parse_ipv4(data, length);
        case 6:
            return parse_ipv6(data, length);
        default:
            return std::nullopt;
    }
}

WireKind WireClassifier::classify(const TcpSegment& s) {
    Direction& self = directions_[Key{s.src_ip, s.src_port, s.dst_ip, s.dst_port}];
    Direction& peer = directions_[Key{s.dst_ip, s.dst_port, s.src_ip, s.src_port}];
    const std::uint32_t end = s.seq + s.payload_bytes + (s.syn ? 1 : 0) + (s.fin ? 1 : 0);
    const bool first = !self.seen;
    const std::uint32_t next_before = self.next_seq;
    if (first || before(self.next_seq, end)) self.next_seq = end;
    self.seen = true;
    // A RST's or SYN's window says nothing about the receive buffer.
    if (!s.rst && !s.syn) self.last_window = s.window;

    if (s.rst) return WireKind::rst;
    if (s.fin) return WireKind::fin;
    if (s.syn) return WireKind::ack;  // Handshake: not interesting for liveness.
    if (s.payload_bytes == 0) {
        if (!first && s.seq == next_before - 1) {
            return peer.seen && peer.last_window == 0 ? WireKind::window_probe : WireKind::keepalive_probe;
        }
        return s.window == 0 ? WireKind::zero_window : WireKind::ack;
    }
    if (!first && !before(next_before, end)) return WireKind::retransmission;
    return peer.seen && peer.last_window == 0 ? WireKind::window_probe : WireKind::data;
}

}  // namespace lifeline::lab
