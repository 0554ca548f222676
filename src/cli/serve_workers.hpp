// `lifeline serve --workers N`: the supervisor of N worker processes (see
// serve_workers.cpp). Internal to src/cli.
#pragma once

#include <string>
#include <vector>

namespace lifeline::cli {

struct WorkerSupervisorOptions {
    int workers = 1;
    std::vector<std::string> worker_args;  // "serve ..." without --workers, --listen and --http.
    std::string listen;                    // As given (port 0 allowed: resolved once for all workers).
    std::string http;                      // The supervisor's summed /metrics address, or "".
    std::string http_url;                  // Filled in: the bound URL.
    bool redis_presence = false;           // --presence redis://: each worker is a gateway of its own,
    std::string presence_gateway;          // named this (default HOSTNAME:PORT) + "/wK".
};

// Runs until SIGINT/SIGTERM has stopped every worker; returns the exit status.
int run_worker_supervisor(WorkerSupervisorOptions options);

}  // namespace lifeline::cli
