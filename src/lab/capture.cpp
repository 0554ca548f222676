#include "lab/capture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pcap/pcap.h>
#include <pcap/sll.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "lab/wire.hpp"

namespace lifeline::lab {

namespace {

// Opens the capture from inside the switch namespace. setns() moves only the
// calling thread, so a short-lived thread does it and the packet socket keeps
// its namespace for life.
Result<pcap_t*> open_in_namespace(const std::string& netns) {
    Result<pcap_t*> result = Error{"capture not opened"};
    std::thread([&] {
        const int ns = ::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC);
        if (ns < 0 || ::setns(ns, CLONE_NEWNET) != 0) {
            result = system_error("enter namespace " + netns + " to capture", errno);
            if (ns >= 0) ::close(ns);
            return;
        }
        ::close(ns);
        char err[PCAP_ERRBUF_SIZE] = {};
        pcap_t* p = pcap_create("any", err);
        if (p == nullptr) {
            result = Error{std::string("pcap_create(any): ") + err};
            return;
        }
        // Headers only: 16 (cooked) + 60 (IPv4 max; IPv6 is 40) + 20 (TCP) bytes, and some options.
        pcap_set_snaplen(p, 128);
        pcap_set_immediate_mode(p, 1);
        pcap_set_buffer_size(p, 32 << 20);
        if (pcap_activate(p) < 0) {
            result = Error{std::string("pcap_activate(any): ") + pcap_geterr(p)};
            pcap_close(p);
            return;
        }
        bpf_program filter{};
        if (pcap_compile(p, &filter, "tcp", 1, PCAP_NETMASK_UNKNOWN) != 0 || pcap_setfilter(p, &filter) != 0) {
            result = Error{std::string("pcap filter: ") + pcap_geterr(p)};
            pcap_close(p);
            return;
        }
        pcap_freecode(&filter);
        if (pcap_datalink(p) != DLT_LINUX_SLL || pcap_setnonblock(p, 1, err) != 0) {
            result = Error{"pcap: unexpected link type or cannot go non-blocking"};
            pcap_close(p);
            return;
        }
        result = p;
    }).join();
    return result;
}

}  // namespace

Result<std::unique_ptr<WireCapture>> WireCapture::start(const std::string& switch_ns,
                                                        const std::vector<std::string>& server_ips,
                                                        std::map<std::uint16_t, int> cell_by_server_port) {
    std::unique_ptr<WireCapture> capture(new WireCapture());
    for (const std::string& ip : server_ips) {
        const auto a = parse_ip_address(ip.c_str());
        if (!a) return Error{"bad server address " + ip};
        capture->server_ips_.push_back(*a);
    }
    Result<pcap_t*> p = open_in_namespace(switch_ns);
    if (!p) return p.error();
    capture->cells_ = std::move(cell_by_server_port);
    capture->thread_ = std::thread([c = capture.get(), pcap = *p] { c->run(pcap); });
    return capture;
}

WireCapture::~WireCapture() { finish(); }

bool WireCapture::is_server(const IpAddress& ip) const {
    return std::find(server_ips_.begin(), server_ips_.end(), ip) != server_ips_.end();
}

std::map<int, std::vector<CapturedPacket>> WireCapture::finish() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return std::move(packets_);
}

void WireCapture::run(void* handle) {
    auto* p = static_cast<pcap_t*>(handle);
    WireClassifier classifier;
    const int fd = pcap_get_selectable_fd(p);
    auto on_packet = [&](const pcap_pkthdr* h, const std::uint8_t* bytes) {
        if (h->caplen < SLL_HDR_LEN) return;
        const std::uint16_t packet_type = static_cast<std::uint16_t>((bytes[0] << 8) | bytes[1]);
        // Each bridged frame shows up twice: entering from its sender and
        // leaving towards its receiver. Keep the first, before any drop rule.
        if (packet_type == LINUX_SLL_OUTGOING) return;
        const auto s = parse_ip_tcp(bytes + SLL_HDR_LEN, h->caplen - SLL_HDR_LEN);
        if (!s) return;
        const bool from_server = is_server(s->src_ip);
        if (!from_server && !is_server(s->dst_ip)) return;
        const auto cell = cells_.find(from_server ? s->src_port : s->dst_port);
        if (cell == cells_.end()) return;
        const WireKind kind = classifier.classify(*s);
        const std::int64_t wall_ns = std::int64_t{h->ts.tv_sec} * 1'000'000'000 + std::int64_t{h->ts.tv_usec} * 1000;
        packets_[cell->second].push_back(
            CapturedPacket{wall_ns, from_server ? Side::server : Side::client, kind, s->payload_bytes});
    };
    while (!stop_.load()) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 50) <= 0) continue;
        if (pfd.revents & (POLLERR | POLLNVAL)) break;  // The capture died: stop rather than spin.
        if (pcap_dispatch(
                p, -1,
                [](std::uint8_t* user, const pcap_pkthdr* h, const std::uint8_t* bytes) {
                    (*reinterpret_cast<decltype(on_packet)*>(user))(h, bytes);
                },
                reinterpret_cast<std::uint8_t*>(&on_packet)) < 0)
            break;
    }
    pcap_stat stats{};
    if (pcap_stats(p, &stats) == 0) dropped_.store(stats.ps_drop);
    pcap_close(p);
}

}  // namespace lifeline::lab
