// The network lab: builds a switched network of namespaces, runs the real
// `lifeline serve` and `lifeline connect` in it (one pair per cell: fault x
// mechanism), injects every fault at once, and measures who notices what,
// why, and how fast, against what each mechanism promised.
//
// Needs CAP_NET_ADMIN and CAP_SYS_ADMIN (namespaces, bridge, nftables,
// packet capture): root, or the unprivileged user namespace the CLI sets up.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lab/lab_result.hpp"
#include "lifeline/result.hpp"

namespace lifeline::lab {

struct LabOptions {
    LabConfig config;
    std::vector<Fault> faults{std::begin(kAllFaults), std::end(kAllFaults)};
    std::vector<Mechanism> mechanisms{std::begin(kAllMechanisms), std::end(kAllMechanisms)};
    std::string binary;         // The `lifeline` executable to run in the namespaces.
    bool capture = true;        // Wire evidence with libpcap on the switch.
    std::string log_directory;  // Children's stderr goes to <dir>/<cell>.{server,client}.log.
    int stop_fd = -1;           // Readable (e.g. a signalfd) = stop now, tear down, return an error.
    std::function<void(const std::string&)> progress;  // One line per phase, for stderr.

    Result<void> validate() const;
};

// Runs the matrix once. Always tears down what it built, also on error and stop.
Result<LabRun> run_lab(const LabOptions& options);

// How long a rebooting host stays off the network: shorter than every
// budget, so what the other side meets is the RST, not its own timeout.
inline constexpr Duration kRebootDowntime = Duration::milliseconds(300);

// The arguments of the server and the client of one cell (without the binary).
std::vector<std::string> server_arguments(Fault fault, Mechanism mechanism, const LabConfig& config,
                                          const std::string& listen);
std::vector<std::string> client_arguments(Fault fault, Mechanism mechanism, const LabConfig& config,
                                          const std::string& server);
// Mechanism::run: what goes before the server's arguments (`run POLICY -- BINARY`).
std::vector<std::string> run_wrapper(const LabConfig& config, const std::string& binary);
// Mechanism::protect: `protect --pid PID POLICY`, run once the server is connected.
std::vector<std::string> protect_arguments(const LabConfig& config, int pid);

}  // namespace lifeline::lab
