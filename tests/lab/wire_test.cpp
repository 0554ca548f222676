#include "lab/wire.hpp"

#include <gtest/gtest.h>

#include <array>

namespace lifeline::lab {
namespace {

const IpAddress kServer = ipv4_mapped(0xC6120001);  // 198.18.0.1
const IpAddress kClient = ipv4_mapped(0xC6120002);

TcpSegment seg(bool from_server, std::uint32_t seq, std::uint32_t len, std::uint16_t window = 500) {
    TcpSegment s;
    s.src_ip = from_server ? kServer : kClient;
    s.dst_ip = from_server ? kClient : kServer;
    s.src_port = from_server ? 7000 : 40000;
    s.dst_port = from_server ? 40000 : 7000;
    s.seq = seq;
    s.payload_bytes = len;
    s.window = window;
    return s;
}

TEST(WireClassifier, TellsDataAcksProbesAndRetransmissionsApart) {
    WireClassifier w;
    EXPECT_EQ(w.classify(seg(true, 1000, 100)), WireKind::data);  // next = 1100
    EXPECT_EQ(w.classify(seg(false, 5000, 0)), WireKind::ack);
    EXPECT_EQ(w.classify(seg(true, 1099, 0)), WireKind::keepalive_probe);   // seq = next - 1, empty
    EXPECT_EQ(w.classify(seg(true, 1000, 100)), WireKind::retransmission);  // already sent
    EXPECT_EQ(w.classify(seg(true, 1100, 50)), WireKind::data);
    EXPECT_EQ(w.classify(seg(true, 0xFFFFFFF0u, 0)), WireKind::ack);  // Not next - 1.
}

TEST(WireClassifier, AProbeOfAZeroWindowIsAWindowProbe) {
    WireClassifier w;
    EXPECT_EQ(w.classify(seg(true, 1000, 100)), WireKind::data);
    EXPECT_EQ(w.classify(seg(false, 5000, 0, 0)), WireKind::zero_window);
    EXPECT_EQ(w.classify(seg(true, 1099, 0)), WireKind::window_probe);
}

TEST(WireClassifier, SequenceNumbersWrap) {
    WireClassifier w;
    EXPECT_EQ(w.classify(seg(true, 0xFFFFFFF0u, 0x20)), WireKind::data);  // next = 0x10
    EXPECT_EQ(w.classify(seg(true, 0x0F, 0)), WireKind::keepalive_probe);
    EXPECT_EQ(w.classify(seg(true, 0xFFFFFFF0u, 0x20)), WireKind::retransmission);
}

TEST(WireClassifier, RstAndFinWin) {
    WireClassifier w;
    TcpSegment rst = seg(false, 7, 0);
    rst.rst = true;
    EXPECT_EQ(w.classify(rst), WireKind::rst);
    TcpSegment fin = seg(true, 9, 0);
    fin.fin = true;
    EXPECT_EQ(w.classify(fin), WireKind::fin);
}

TEST(ParseIpTcp, Ipv4ReadsTheHeadersAndThePayloadLengthFromTheIpHeader) {
    std::array<std::uint8_t, 40> p{};
    p[0] = 0x45;                 // IPv4, 20-byte header
    p[2] = 0x00, p[3] = 40 + 8;  // total length: headers + 8 payload bytes not captured
    p[9] = 6;                    // TCP
    p[12] = 198, p[13] = 18, p[14] = 0, p[15] = 2;
    p[16] = 198, p[17] = 18, p[18] = 0, p[19] = 1;
    p[20] = 0x9c, p[21] = 0x40;                        // 40000
    p[22] = 0x1b, p[23] = 0x58;                        // 7000
    p[24] = 0, p[25] = 0, p[26] = 0x03, p[27] = 0xe8;  // seq 1000
    p[32] = 0x50;                                      // 20-byte TCP header
    p[33] = 0x04;                                      // RST
    p[34] = 0, p[35] = 0;                              // window 0
    const auto s = parse_ip_tcp(p.data(), p.size());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->src_ip, kClient);
    EXPECT_EQ(s->dst_port, 7000);
    EXPECT_EQ(s->seq, 1000u);
    EXPECT_TRUE(s->rst);
    EXPECT_EQ(s->window, 0);
    EXPECT_EQ(s->payload_bytes, 8u);
    EXPECT_FALSE(parse_ip_tcp(p.data(), 30));  // Truncated TCP header.
    p[9] = 17;                                 // UDP
    EXPECT_FALSE(parse_ip_tcp(p.data(), p.size()));
}

TEST(ParseIpTcp, Ipv6ReadsAddressesPortsAndThePayloadLengthFromTheIpHeader) {
    std::array<std::uint8_t, 60> p{};
    p[0] = 0x60;                                           // IPv6
    p[4] = 0x00, p[5] = 20 + 16;                           // payload length: TCP header + 16 bytes not captured
    p[6] = 6;                                              // next header: TCP
    p[8] = 0x20, p[9] = 0x01, p[10] = 0x00, p[11] = 0x02;  // 2001:2::2
    p[23] = 0x02;
    p[24] = 0x20, p[25] = 0x01, p[26] = 0x00, p[27] = 0x02;  // 2001:2::1
    p[39] = 0x01;
    p[40] = 0x9c, p[41] = 0x40;  // 40000
    p[42] = 0x1b, p[43] = 0x58;  // 7000
    p[47] = 0x07;                // seq 7
    p[52] = 0x50;                // 20-byte TCP header
    p[53] = 0x01;                // FIN
    const auto s = parse_ip_tcp(p.data(), p.size());
    ASSERT_TRUE(s);
    EXPECT_EQ(s->src_ip, *parse_ip_address("2001:2::2"));
    EXPECT_EQ(s->dst_ip, *parse_ip_address("2001:2::1"));
    EXPECT_EQ(s->src_port, 40000);
    EXPECT_EQ(s->seq, 7u);
    EXPECT_TRUE(s->fin);
    EXPECT_EQ(s->payload_bytes, 16u);
    EXPECT_FALSE(parse_ip_tcp(p.data(), 50));  // Truncated TCP header.
    p[6] = 0;                                  // A hop-by-hop extension header: not the lab's traffic.
    EXPECT_FALSE(parse_ip_tcp(p.data(), p.size()));
}

TEST(ParseIpAddress, MapsIpv4IntoIpv6AndRejectsNames) {
    EXPECT_EQ(*parse_ip_address("198.18.0.1"), ipv4_mapped(0xC6120001));
    EXPECT_EQ(*parse_ip_address("::ffff:198.18.0.2"), ipv4_mapped(0xC6120002));
    EXPECT_FALSE(parse_ip_address("localhost"));
}

}  // namespace
}  // namespace lifeline::lab
