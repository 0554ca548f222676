#include "lab/wire.hpp"

namespace lifeline::lab {

namespace {

std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
std::uint16_t be16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

// Serial number arithmetic (RFC 1982): a is before b.
bool before(std::uint32_t a, std::uint32_t b) { return static_cast<std::int32_t>(a - b) < 0; }

}  // namespace

std::optional<TcpSegment> parse_ipv4_tcp(const std::uint8_t* data, std::size_t length) {
    if (length < 20 || (data[0] >> 4) != 4 || data[9] != 6) return std::nullopt;
    const std::size_t ip_header = static_cast<std::size_t>(data[0] & 0x0fu) * 4;
    const std::size_t total = be16(data + 2);
    if (ip_header < 20 || length < ip_header + 20 || total < ip_header + 20) return std::nullopt;
    const std::uint8_t* tcp = data + ip_header;
    const std::size_t tcp_header = static_cast<std::size_t>(tcp[12] >> 4) * 4;
    if (tcp_header < 20 || total < ip_header + tcp_header) return std::nullopt;
    TcpSegment s;
    s.src_ip = be32(data + 12);
    s.dst_ip = be32(data + 16);
    s.src_port = be16(tcp);
    s.dst_port = be16(tcp + 2);
    s.seq = be32(tcp + 4);
    s.ack = be32(tcp + 8);
    s.fin = (tcp[13] & 0x01) != 0;
    s.syn = (tcp[13] & 0x02) != 0;
    s.rst = (tcp[13] & 0x04) != 0;
    s.window = be16(tcp + 14);
    // The IP total length, not the captured length: the capture keeps headers only.
    s.payload_bytes = static_cast<std::uint32_t>(total - ip_header - tcp_header);
    return s;
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
