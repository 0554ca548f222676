// Internal: wire evidence. One libpcap capture on every port of the lab's
// switch ("any" inside the switch namespace), keeping each TCP segment once:
// as it enters the switch from its sender, before any fault drops it.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "lab/lab_result.hpp"
#include "lab/wire.hpp"
#include "lifeline/result.hpp"

namespace lifeline::lab {

struct CapturedPacket {
    std::int64_t wall_ns;  // CLOCK_REALTIME, as libpcap stamps packets.
    Side from;
    WireKind kind;
    std::uint32_t payload_bytes;
};

class WireCapture {
public:
    // Captures TCP (over IPv4 or IPv6) between the `server_ips` and anyone,
    // attributing each segment to the cell whose server port it uses.
    static Result<std::unique_ptr<WireCapture>> start(const std::string& switch_ns,
                                                      const std::vector<std::string>& server_ips,
                                                      std::map<std::uint16_t, int> cell_by_server_port);
    ~WireCapture();
    WireCapture(const WireCapture&) = delete;
    WireCapture& operator=(const WireCapture&) = delete;

    // Stops the capture thread and returns the packets per cell.
    std::map<int, std::vector<CapturedPacket>> finish();
    // Packets the kernel dropped before libpcap read them (0 when evidence is complete).
    std::uint64_t dropped() const { return dropped_.load(); }

private:
    WireCapture() = default;
    void run(void* pcap);

    bool is_server(const IpAddress& ip) const;

    std::vector<IpAddress> server_ips_;
    std::map<std::uint16_t, int> cells_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> dropped_{0};
    std::thread thread_;
    std::map<int, std::vector<CapturedPacket>> packets_;  // Written by the thread until it is joined.
};

}  // namespace lifeline::lab
